package tiertest

import "syscall"

// dieWithParent has the kernel kill the server when the test binary exits,
// however it exits.
func dieWithParent() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
