//go:build linux

package process

import "syscall"

// procAttr puts each node in its own process group (a ^C to the test does not
// reach it) and has the kernel kill it if the test process dies first, so a
// test that panics or times out leaves no node behind.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
