//go:build !race

package e2e_test

// raceEnabled tells whether this test binary was built with -race, so the
// child `go test` uses the same build (and the build cache).
const raceEnabled = false
