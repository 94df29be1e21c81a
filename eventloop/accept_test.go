package eventloop

import "testing"

// TestGrowthSteps checks when the acceptor collects: every burstMin
// connections while few are open, then at each eighth of growth, so that a
// burst's collections add up to a few times the cost of one at its end;
// never while churn keeps the count steady; and afresh from a low after
// the connections have gone.
func TestGrowthSteps(t *testing.T) {
	var g growth
	steps := 0
	for open := range int64(10_001) {
		if g.step(open) {
			steps++
		}
	}
	// 100 to 800 by 100, then by an eighth: 8 + ln(10000/800)/ln(9/8).
	if steps < 28 || steps > 31 {
		t.Errorf("%d collections while 10,000 connections opened, want about 29", steps)
	}

	for i := range 100_000 {
		if g.step(10_000 - int64(i%2)) {
			t.Fatalf("churn at a steady count collected at accept %d", i)
		}
	}

	steps = 0
	for open := int64(50); open <= 850; open++ {
		if g.step(open) {
			steps++
		}
	}
	if steps != 8 {
		t.Errorf("%d collections from 50 to 850 open after the connections had gone, want 8 (one per burstMin)", steps)
	}
}
