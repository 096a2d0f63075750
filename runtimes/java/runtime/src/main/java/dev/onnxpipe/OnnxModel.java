package dev.onnxpipe;

import com.google.protobuf.InvalidProtocolBufferException;
import dev.onnxpipe.core.DType;
import dev.onnxpipe.core.Tensor;
import dev.onnxpipe.onnx.OnnxProto.GraphProto;
import dev.onnxpipe.onnx.OnnxProto.ModelProto;
import dev.onnxpipe.onnx.OnnxProto.OperatorSetIdProto;
import dev.onnxpipe.onnx.OnnxProto.StringStringEntryProto;
import dev.onnxpipe.onnx.OnnxProto.TensorProto;
import dev.onnxpipe.onnx.OnnxProto.ValueInfoProto;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.Map;
import java.util.Set;

/**
 * What the runtime reads from an ONNX file before ONNX Runtime sees it, through the classes protoc generates from
 * ONNX's own onnx.proto (src/main/proto): the metadata (the manifest), the opset domains (the custom-op library
 * must be registered before a session exists), and the run-time parameters.
 *
 * <p>A parameter (a threshold) is a graph input backed by an initializer of the same name, so plain ONNX Runtime
 * and Triton run the file with its default. ONNX Runtime's Java API cannot feed such an input: {@code
 * OrtSession.run} accepts only {@code getInputNames()}, which leaves it out. So {@link #sessionBytes()} is the
 * model with those initializers dropped (the inputs stay), and {@link #parameters} keeps their values: the
 * pipeline feeds every parameter on every run, the caller's value or this default, in its one session.
 */
final class OnnxModel {
  final Map<String, String> metadata = new LinkedHashMap<>();
  /** Opset domains; the default one as {@code ai.onnx}. */
  final Set<String> domains = new LinkedHashSet<>();
  /** Operator types of the main graph and of the model's local functions. */
  final Set<String> opTypes = new LinkedHashSet<>();
  /** Parameter name -> its default (the initializer), in graph input order. */
  final Map<String, Tensor> parameters = new LinkedHashMap<>();
  private final byte[] sessionBytes;

  private OnnxModel(byte[] file, ModelProto model, String where) {
    for (StringStringEntryProto e : model.getMetadataPropsList()) {
      metadata.put(e.getKey(), e.getValue());
    }
    for (OperatorSetIdProto o : model.getOpsetImportList()) {
      domains.add(o.getDomain().isEmpty() ? "ai.onnx" : o.getDomain());
    }
    GraphProto graph = model.getGraph();
    graph.getNodeList().forEach(n -> opTypes.add(n.getOpType()));
    model.getFunctionsList().forEach(f -> f.getNodeList().forEach(n -> opTypes.add(n.getOpType())));
    Map<String, TensorProto> initializers = new LinkedHashMap<>();
    for (TensorProto t : graph.getInitializerList()) {
      initializers.put(t.getName(), t);
    }
    for (ValueInfoProto input : graph.getInputList()) {
      TensorProto init = initializers.get(input.getName());
      if (init != null) {
        parameters.put(input.getName(), Initializers.decode(init, where));
      }
    }
    if (parameters.isEmpty()) {
      sessionBytes = file;
    } else {
      GraphProto.Builder g = graph.toBuilder().clearInitializer();
      for (TensorProto t : graph.getInitializerList()) {
        if (!parameters.containsKey(t.getName())) {
          g.addInitializer(t);
        }
      }
      sessionBytes = model.toBuilder().setGraph(g).build().toByteArray();
    }
  }

  /** The model in {@code file}; MODEL_LOAD (naming {@code where}) if it is not an ONNX ModelProto. */
  static OnnxModel read(byte[] file, String where) {
    ModelProto model;
    try {
      model = ModelProto.parseFrom(file);
    } catch (InvalidProtocolBufferException e) {
      throw PipelineException.modelLoad(where + ": not a valid ONNX model file (" + e.getMessage() + ")", e);
    }
    if (!model.hasGraph()) {
      throw PipelineException.modelLoad(where + ": not a valid ONNX model file (the ModelProto has no graph)", null);
    }
    return new OnnxModel(file, model, where);
  }

  /** The bytes to give ONNX Runtime: the file, or the file without the parameters' initializers. */
  byte[] sessionBytes() {
    return sessionBytes;
  }

  /** TensorProto -> Tensor for the parameters' defaults (raw_data or the typed fields). */
  private static final class Initializers {
    static Tensor decode(TensorProto t, String file) {
      String where = file + ": initializer '" + t.getName() + "'";
      if (t.getDataLocation() == TensorProto.DataLocation.EXTERNAL) {
        throw PipelineException.modelLoad(where + " (a run-time parameter) uses external data; expected it inline",
            null);
      }
      DType dtype = DType.fromOnnxEnum(t.getDataType());
      if (dtype == null) {
        throw PipelineException.modelLoad(where + " (a run-time parameter): ONNX type " + t.getDataType()
            + " is not one of " + DType.names(), null);
      }
      long[] shape = t.getDimsList().stream().mapToLong(Long::longValue).toArray();
      int n = (int) Tensor.elementCount(shape, where);
      ByteBuffer raw = t.hasRawData() ? t.getRawData().asReadOnlyByteBuffer().order(ByteOrder.LITTLE_ENDIAN) : null;
      return switch (dtype) {
        case FLOAT32 -> {
          float[] v = new float[n];
          for (int i = 0; i < n; i++) {
            v[i] = raw != null ? raw.getFloat() : t.getFloatData(i);
          }
          yield Tensor.ofFloats(v, shape);
        }
        case FLOAT64 -> {
          double[] v = new double[n];
          for (int i = 0; i < n; i++) {
            v[i] = raw != null ? raw.getDouble() : t.getDoubleData(i);
          }
          yield Tensor.ofDoubles(v, shape);
        }
        case INT64 -> {
          long[] v = new long[n];
          for (int i = 0; i < n; i++) {
            v[i] = raw != null ? raw.getLong() : t.getInt64Data(i);
          }
          yield Tensor.ofLongs(v, shape);
        }
        case INT32 -> {
          int[] v = new int[n];
          for (int i = 0; i < n; i++) {
            v[i] = raw != null ? raw.getInt() : t.getInt32Data(i);
          }
          yield Tensor.ofInts(v, shape);
        }
        case UINT8, INT8 -> {
          byte[] v = new byte[n];
          for (int i = 0; i < n; i++) {
            v[i] = raw != null ? raw.get() : (byte) t.getInt32Data(i);
          }
          yield dtype == DType.UINT8 ? Tensor.ofUint8(v, shape) : Tensor.ofInt8(v, shape);
        }
        case BOOL -> {
          boolean[] v = new boolean[n];
          for (int i = 0; i < n; i++) {
            v[i] = raw != null ? raw.get() != 0 : t.getInt32Data(i) != 0;
          }
          yield Tensor.ofBooleans(v, shape);
        }
        case STRING -> {
          String[] v = new String[n];
          for (int i = 0; i < n; i++) {
            v[i] = t.getStringData(i).toString(StandardCharsets.UTF_8);
          }
          yield Tensor.ofStrings(v, shape);
        }
      };
    }
  }
}
