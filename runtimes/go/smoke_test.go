package onnxpipe

import "testing"

func TestSmoke(t *testing.T) {
	p := loadT(t, fixture(t, "basic.onnx"))
	out, err := p.Run(bg, basicInputs(2))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range out.Names() {
		tt, _ := out.Tensor(n)
		t.Logf("%s %v %v", n, tt, tt.Values())
	}
	in := basicInputs(1)
	in["score_threshold"] = Scalar(float32(0.99))
	out, err = p.Run(bg, in)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := out.Bool("confident")
	t.Log(c)
	t.Logf("%+v", p.Signature())
}
