//go:build !linux

package proctest

import "os/exec"

// setParentDeathSignal does nothing off Linux; the cleanups kill the
// processes.
func setParentDeathSignal(*exec.Cmd) {}
