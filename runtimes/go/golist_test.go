package onnxpipe

import "os/exec"

func goList(args ...string) (string, error) {
	out, err := exec.Command("go", append([]string{"list"}, args...)...).Output()
	return string(out), err
}
