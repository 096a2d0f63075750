#!/usr/bin/env bash
# Generate the Go stubs of proto/grpc_service.proto (the repository's one copy of the protocol).
#
#   ./generate.sh            rewrite inference/ (commit the result)
#   ./generate.sh DIR        write them into DIR (the stubs test compares DIR with inference/)
#
# protoc is the one bundled with grpcio-tools in the repository's .venv (ONNXPIPE_PYTHON overrides the
# interpreter); protoc-gen-go and protoc-gen-go-grpc are installed at the versions pinned below from the Go
# module proxy into ../../../build/tools/go/ (git-ignored). Exit 3: a plugin could not be installed.
#
# The proto's go_package names runtimes/go/inference; the stubs live in this module, so the import path is
# mapped with M options instead (the proto is shared by every language and stays unchanged).
set -euo pipefail

PROTOC_GEN_GO_VERSION=v1.36.12
PROTOC_GEN_GO_GRPC_VERSION=v1.6.2
IMPORT_PATH=github.com/onnxpipe/onnxpipe/runtimes/go/sidecar/inference

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../../.." && pwd)
out=${1:-$here/inference}
python=${ONNXPIPE_PYTHON:-$root/.venv/bin/python}
tools=$root/build/tools/go

install_plugin() { # name package version "expected --version output"
    local bin=$tools/$1
    if [ -x "$bin" ] && [ "$("$bin" --version 2>/dev/null)" = "$4" ]; then return 0; fi
    mkdir -p "$tools"
    if ! GOBIN=$tools go install "$2@$3" >&2; then
        echo "generate.sh: cannot install $2@$3 into $tools (no access to the Go module proxy?)" >&2
        exit 3
    fi
}
install_plugin protoc-gen-go google.golang.org/protobuf/cmd/protoc-gen-go "$PROTOC_GEN_GO_VERSION" \
    "protoc-gen-go $PROTOC_GEN_GO_VERSION"
install_plugin protoc-gen-go-grpc google.golang.org/grpc/cmd/protoc-gen-go-grpc "$PROTOC_GEN_GO_GRPC_VERSION" \
    "protoc-gen-go-grpc ${PROTOC_GEN_GO_GRPC_VERSION#v}"

if ! "$python" -c 'import grpc_tools' 2>/dev/null; then
    echo "generate.sh: $python has no grpc_tools (run 'make setup' at the repository root, or set ONNXPIPE_PYTHON)" >&2
    exit 2
fi

mkdir -p "$out"
"$python" -m grpc_tools.protoc -I"$root/proto" \
    --plugin=protoc-gen-go="$tools/protoc-gen-go" --plugin=protoc-gen-go-grpc="$tools/protoc-gen-go-grpc" \
    --go_out="$out" --go_opt=paths=source_relative --go_opt=Mgrpc_service.proto="$IMPORT_PATH" \
    --go-grpc_out="$out" --go-grpc_opt=paths=source_relative --go-grpc_opt=Mgrpc_service.proto="$IMPORT_PATH" \
    "$root/proto/grpc_service.proto"
echo "generate.sh: wrote $out/grpc_service.pb.go and $out/grpc_service_grpc.pb.go" >&2
