//go:build race

package app_test

// raceEnabled reports whether the race detector is on; timing-sensitive
// tests slow their simulated GPUs down to keep the proxy's share small.
const raceEnabled = true
