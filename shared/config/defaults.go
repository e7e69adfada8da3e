package config

import "cmp"

// OrDefault returns def when v is zero or negative, and v otherwise. It is
// for counts, sizes and durations where zero or a negative value means
// "unset", as in the Options and Config structs that constructors fill in:
// x = OrDefault(x, def) is the same as if x <= 0 { x = def }, a NaN
// included (kept, as that comparison keeps it). It is not for settings
// where zero is meaningful.
func OrDefault[T cmp.Ordered](v, def T) T {
	var zero T
	if v <= zero {
		return def
	}
	return v
}
