/*
 * libonnxruntime.so for ONNX Runtime's Java binding (1.29.0, the newest Java release), forwarding to the
 * ONNX Runtime C library the Python wheel ships (1.31.x), so Java computes with the same kernels as the
 * Python and Go runtimes and the three CLIs print the same bytes (spec/README.md).
 *
 * The binding's JNI library needs two symbols at version VERS_1.29.0; newer libraries define them at their own
 * version only, so this library defines them at VERS_1.29.0 (ort_forward.map) and forwards each call to the
 * library at ONNXPIPE_ORT_LIB (its full path, set when this file is compiled; runtimes/java/Makefile). ONNX
 * Runtime's C API is versioned and backward compatible: the binding asks OrtGetApiBase()->GetApi(its version).
 * Java loads it through -Donnxruntime.native.path=<this folder> (build/bin/onnxpipe-java and the tests do).
 */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

#ifndef ONNXPIPE_ORT_LIB
#error "compile with -DONNXPIPE_ORT_LIB=\"/path/to/libonnxruntime.so.<version>\""
#endif

static void *resolve(const char *symbol) {
    static void *library;
    if (library == NULL) {
        library = dlopen(ONNXPIPE_ORT_LIB, RTLD_NOW | RTLD_LOCAL);
        if (library == NULL) {
            fprintf(stderr, "onnxpipe: cannot load ONNX Runtime from %s: %s (rebuild: make -C runtimes/java build)\n",
                    ONNXPIPE_ORT_LIB, dlerror());
            exit(70);
        }
    }
    void *found = dlsym(library, symbol);
    if (found == NULL) {
        fprintf(stderr, "onnxpipe: %s has no %s\n", ONNXPIPE_ORT_LIB, symbol);
        exit(70);
    }
    return found;
}

typedef const void *(*get_api_base_fn)(void);
typedef void *(*append_cpu_fn)(void *options, int use_arena);

const void *OrtGetApiBase(void) {
    return ((get_api_base_fn)resolve("OrtGetApiBase"))();
}

void *OrtSessionOptionsAppendExecutionProvider_CPU(void *options, int use_arena) {
    return ((append_cpu_fn)resolve("OrtSessionOptionsAppendExecutionProvider_CPU"))(options, use_arena);
}
