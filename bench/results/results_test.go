package results

import (
	"path/filepath"
	"testing"
)

func TestSpreadOf(t *testing.T) {
	tests := []struct {
		in   []float64
		want Spread
	}{
		{nil, Spread{}},
		{[]float64{3}, Spread{3, 3, 3, 1}},
		{[]float64{5, 1, 3}, Spread{3, 1, 5, 3}},
		{[]float64{4, 1, 3, 2}, Spread{2.5, 1, 4, 4}},
	}
	for _, tt := range tests {
		if got := SpreadOf(tt.in); got != tt.want {
			t.Errorf("SpreadOf(%v) = %+v, want %+v", tt.in, got, tt.want)
		}
	}
}

func TestSaveLoad(t *testing.T) {
	path := filepath.Join(t.TempDir(), "raw.json")
	r := &Run{Schema: Schema, Label: "x", Cells: []Cell{{Server: "eventloop-1", Kind: Closed, Conns: 100, Goroutines: -1}}}
	if err := r.Save(path); err != nil {
		t.Fatal(err)
	}
	got, err := Load(path)
	if err != nil || got.Label != "x" || len(got.Cells) != 1 || got.Cells[0].Goroutines != -1 {
		t.Fatalf("Load = %+v, %v", got, err)
	}
	r.Schema = 99
	_ = r.Save(path)
	if _, err := Load(path); err == nil {
		t.Error("a run of another schema was read")
	}
}
