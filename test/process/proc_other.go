//go:build unix && !linux

package process

import "syscall"

// procAttr puts each node in its own process group; only Linux can also tie
// the node's life to the test process (see proc_linux.go).
func procAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }
