package model_test

import (
	"errors"
	"testing"

	"github.com/rs/zerolog"

	"echoloop/bench/model"
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
