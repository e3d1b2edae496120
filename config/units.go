package config

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// String formats d as Go does: "1m30s".
func (d Duration) String() string { return time.Duration(d).String() }

// MarshalYAML writes d as a duration string, so that a Config round-trips.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// UnmarshalYAML reads a Go duration string ("30s", "10m", "1h30m"). A bare
// number is refused, because 30 could mean seconds or nanoseconds; the
// message says to write "30s".
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("expected a duration such as \"30s\", got %s", describeNode(n, false))
	}
	s := strings.TrimSpace(n.Value)
	if _, err := strconv.ParseFloat(s, 64); err == nil {
		return fmt.Errorf("duration %s has no unit; write %q", s, s+"s")
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("%q is not a duration; write a number with a unit, such as \"30s\", \"10m\" or \"1h30m\"", s)
	}
	*d = Duration(v)
	return nil
}

// Sizes in bytes.
const (
	KiB ByteSize = 1 << 10
	MiB ByteSize = 1 << 20
	GiB ByteSize = 1 << 30
)

// Int returns b as an int. Validated limits are at most 1 GiB, so the
// conversion is exact on every platform.
func (b ByteSize) Int() int { return int(b) }

// String writes b with the largest unit that divides it: "64MiB", "1000B".
func (b ByteSize) String() string {
	switch {
	case b != 0 && b%GiB == 0:
		return strconv.FormatInt(int64(b/GiB), 10) + "GiB"
	case b != 0 && b%MiB == 0:
		return strconv.FormatInt(int64(b/MiB), 10) + "MiB"
	case b != 0 && b%KiB == 0:
		return strconv.FormatInt(int64(b/KiB), 10) + "KiB"
	}
	return strconv.FormatInt(int64(b), 10) + "B"
}

// MarshalYAML writes b as String does, so that a Config round-trips.
func (b ByteSize) MarshalYAML() (any, error) { return b.String(), nil }

// UnmarshalYAML reads a whole number of bytes (1048576) or a string that
// ParseByteSize accepts ("1MiB").
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("expected a size such as \"64MiB\", got %s", describeNode(n, false))
	}
	switch n.ShortTag() {
	case "!!int":
		var v int64
		if err := n.Decode(&v); err != nil {
			return fmt.Errorf("%s is too large for a size", n.Value)
		}
		if v < 0 {
			return fmt.Errorf("size %s is negative", n.Value)
		}
		*b = ByteSize(v)
		return nil
	case "!!str":
		v, err := ParseByteSize(n.Value)
		if err != nil {
			return err
		}
		*b = v
		return nil
	}
	return fmt.Errorf("%s is not a size; write a whole number of bytes or one with a unit: 512B, 64KiB, 1MiB, 1GiB", n.Value)
}

// ParseByteSize parses a whole number of bytes with an optional unit, B,
// KiB, MiB or GiB (powers of 1024), with or without a space before it:
// "1048576", "512B", "64KiB", "1 MiB", "1GiB". Decimal units (KB, MB) are
// refused rather than guessed at.
func ParseByteSize(s string) (ByteSize, error) {
	s = strings.TrimSpace(s)
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	digits, unit := s[:i], strings.TrimSpace(s[i:])
	if digits == "" {
		return 0, fmt.Errorf("%q is not a size; write a whole number of bytes or one with a unit: 512B, 64KiB, 1MiB, 1GiB", s)
	}
	if strings.HasPrefix(unit, ".") {
		return 0, fmt.Errorf("%q: a size is a whole number; write 1536KiB, not 1.5MiB", s)
	}
	var mult ByteSize
	switch unit {
	case "", "B":
		mult = 1
	case "KiB":
		mult = KiB
	case "MiB":
		mult = MiB
	case "GiB":
		mult = GiB
	default:
		return 0, fmt.Errorf("unknown unit %q in %q; use B, KiB, MiB or GiB (powers of 1024)", unit, s)
	}
	n, err := strconv.ParseInt(digits, 10, 64)
	if err != nil || n > math.MaxInt64/int64(mult) {
		return 0, errors.New(strconv.Quote(s) + " is too large for a size")
	}
	return ByteSize(n) * mult, nil
}
