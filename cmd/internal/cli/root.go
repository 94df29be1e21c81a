package cli

import (
	"fmt"
	"os"
	"path/filepath"
)

// ModuleRoot finds the directory of go.mod from the working directory up:
// the tree that the bench commands build their binaries from. name is the
// command, for the error.
func ModuleRoot(name string) (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("run %s inside the echoloop repository: no go.mod found above the working directory", name)
		}
		dir = parent
	}
}
