package sidecar

import "syscall"

// procAttr puts the sidecar in its own process group (stopped as a group) and has the kernel kill it if
// this test binary dies without stopping it (a panic, a -timeout).
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
