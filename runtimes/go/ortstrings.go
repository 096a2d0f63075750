package onnxpipe

/*
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>

// onnxruntime_go v1.35.0 fills string tensors with C strings (FillStringTensor), which end at a NUL byte;
// ONNX Runtime's length-aware GetResizedStringTensorElementBuffer (C API >= 16) keeps every byte. The OrtApi
// table is append-only, so its entries are reached by index rather than by vendoring onnxruntime_c_api.h:
// 2 GetErrorMessage, 93 ReleaseStatus, 252 GetResizedStringTensorElementBuffer (onnxruntime_c_api.h of
// ORT_API_VERSION 29, the version onnxruntime_go is compiled against; TestNULInStringSurvives checks them).
typedef struct {
	const void* (*GetApi)(unsigned int version);
	const char* (*GetVersionString)(void);
} onnxpipe_api_base;

static void** onnxpipe_api;

static const char* onnxpipe_api_init(const char* lib) {
	void* h = dlopen(lib, RTLD_LAZY | RTLD_NOLOAD); // the library onnxruntime_go loaded
	if (!h) h = dlopen(lib, RTLD_LAZY);
	if (!h) return dlerror();
	const onnxpipe_api_base* (*base)(void) = (const onnxpipe_api_base* (*)(void))dlsym(h, "OrtGetApiBase");
	if (!base) return "the library has no OrtGetApiBase";
	onnxpipe_api = (void**)base()->GetApi(29);
	if (!onnxpipe_api) return "the library does not serve ONNX Runtime C API version 29";
	return NULL;
}

// onnxpipe_set_string copies n bytes of s into element index of a string tensor; NULL or a malloc'ed message.
static char* onnxpipe_set_string(void* value, size_t index, const char* s, size_t n) {
	typedef void* (*resize_fn)(void*, size_t, size_t, char**);
	typedef const char* (*message_fn)(const void*);
	typedef void (*release_fn)(void*);
	char* buf = NULL;
	void* status = ((resize_fn)onnxpipe_api[252])(value, index, n, &buf);
	if (status) {
		char* m = strdup(((message_fn)onnxpipe_api[2])(status));
		((release_fn)onnxpipe_api[93])(status);
		return m;
	}
	if (n > 0) memcpy(buf, s, n);
	return NULL;
}
*/
import "C"

import (
	"errors"
	"sync"
	"unsafe"

	ort "github.com/yalue/onnxruntime_go"
)

var stringAPI struct {
	once sync.Once
	err  error
}

// newStringTensor is a string tensor holding data byte for byte (NUL characters included).
func newStringTensor(shape ort.Shape, data []string) (*ort.StringTensor, error) {
	stringAPI.once.Do(func() {
		env.Lock()
		lib := C.CString(env.lib)
		env.Unlock()
		defer C.free(unsafe.Pointer(lib))
		if msg := C.onnxpipe_api_init(lib); msg != nil {
			stringAPI.err = errors.New(C.GoString(msg))
		}
	})
	if stringAPI.err != nil {
		return nil, stringAPI.err
	}
	st, err := ort.NewStringTensor(shape)
	if err != nil {
		return nil, err
	}
	// ValueInternalData's one field is the OrtValue pointer; onnxruntime_go does not export it.
	value := *(*unsafe.Pointer)(unsafe.Pointer(st.GetInternals()))
	for i, s := range data {
		var p *C.char
		if len(s) > 0 {
			p = (*C.char)(unsafe.Pointer(unsafe.StringData(s))) // read during the call only
		}
		if msg := C.onnxpipe_set_string(value, C.size_t(i), p, C.size_t(len(s))); msg != nil {
			defer C.free(unsafe.Pointer(msg))
			st.Destroy()
			return nil, errors.New(C.GoString(msg))
		}
	}
	return st, nil
}
