//go:build !linux

package sidecar

import "syscall"

// procAttr puts the sidecar in its own process group, stopped as a group.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
