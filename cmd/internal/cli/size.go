// Package cli holds what the echoloop commands share: byte-size flags and
// logger set-up.
package cli

import (
	"fmt"
	"strconv"
	"strings"
)

var sizeUnits = []struct {
	suffix string
	mult   int64
}{
	{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10},
	{"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10},
	{"g", 1 << 30}, {"m", 1 << 20}, {"k", 1 << 10},
	{"B", 1},
}

// ParseSize reads a byte count: a plain number ("65536") or one with a binary
// unit ("64KiB", "64K", "1MiB", "1m"). Negative sizes are an error.
func ParseSize(s string) (int64, error) {
	num, mult := strings.TrimSpace(s), int64(1)
	for _, u := range sizeUnits {
		if strings.HasSuffix(num, u.suffix) {
			num, mult = strings.TrimSuffix(num, u.suffix), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("invalid size %q: want a number of bytes such as 65536, 64KiB or 1MiB", s)
	}
	if n > (1<<62)/mult {
		return 0, fmt.Errorf("size %q is too large", s)
	}
	return n * mult, nil
}

// Size is a flag.Value holding a byte count written as ParseSize reads it.
type Size struct {
	N     int64
	Given bool // the flag was given on the command line
}

// String writes the size as ParseSize reads it, in the largest binary unit
// that divides it ("4MiB", "64KiB", "1000"), so that -h shows defaults as a
// person would type them.
func (z *Size) String() string {
	if z == nil {
		return "0"
	}
	return FormatSize(z.N)
}

// FormatSize writes n in the largest binary unit that divides it exactly.
func FormatSize(n int64) string {
	for _, u := range sizeUnits[:3] { // GiB, MiB, KiB
		if n != 0 && n%u.mult == 0 {
			return strconv.FormatInt(n/u.mult, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10)
}

// Set implements flag.Value.
func (z *Size) Set(s string) error {
	n, err := ParseSize(s)
	if err != nil {
		return err
	}
	z.N, z.Given = n, true
	return nil
}
