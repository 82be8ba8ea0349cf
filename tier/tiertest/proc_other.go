//go:build !linux

package tiertest

import "syscall"

// dieWithParent has no portable equivalent of Linux's Pdeathsig: elsewhere
// the server outlives the test binary and must be stopped by hand.
func dieWithParent() *syscall.SysProcAttr { return nil }
