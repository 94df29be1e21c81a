package model_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/rs/zerolog"

	"echoloop/bench/model"
	"echoloop/bench/servertest"
	"echoloop/eventloop/frame"
)

var nopLogger = zerolog.Nop()

func TestNewRefusesWhatDoesNotApply(t *testing.T) {
	if _, err := model.New(model.Options{Model: model.Goroutine, Loops: 2}); !errors.Is(err, model.ErrNotForModel) {
		t.Errorf("goroutine model with 2 loops: %v, want ErrNotForModel", err)
	}
	if _, err := model.New(model.Options{Model: "threads"}); !errors.Is(err, model.ErrUnknown) {
		t.Errorf("unknown model: %v, want ErrUnknown", err)
	}
}

// TestReference checks the bench's reference echo loop echoes bytes of any
// framing unchanged and stops cleanly.
func TestReference(t *testing.T) {
	srv := servertest.Start(t, model.Options{Model: model.Reference})
	for _, codec := range []frame.Codec{frame.Line{}, frame.Length{}} {
		cl := servertest.NewClient(servertest.Dial(t, srv.Addr()), codec)
		payloads := [][]byte{[]byte("one"), []byte("two"), {}}
		if err := cl.Send(payloads...); err != nil {
			t.Fatal(err)
		}
		for _, want := range payloads {
			got, err := cl.Recv()
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("%s: got %q, %v; want %q", codec, got, err, want)
			}
		}
	}
}
