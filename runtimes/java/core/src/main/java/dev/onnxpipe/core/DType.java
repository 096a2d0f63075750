package dev.onnxpipe.core;

import java.util.Arrays;
import java.util.List;
import java.util.Set;

/**
 * The dtype table of spec/dtypes.json: the tensor-JSON / manifest name (numpy's), the ONNX TensorProto type, the
 * KServe v2 datatype, the bytes per element and the dtypes an input of this dtype accepts and widens losslessly.
 * {@code DTypeTest} checks this table against the spec file.
 */
public enum DType {
  FLOAT32("float32", 1, "FP32", 4),
  FLOAT64("float64", 11, "FP64", 8),
  INT64("int64", 7, "INT64", 8),
  INT32("int32", 6, "INT32", 4),
  /** Unsigned bytes (pixels): Java {@code byte} storage, values 0..255 (use {@link Byte#toUnsignedInt}). */
  UINT8("uint8", 2, "UINT8", 1),
  INT8("int8", 3, "INT8", 1),
  BOOL("bool", 9, "BOOL", 1),
  /** UTF-8 strings; KServe BYTES. */
  STRING("string", 8, "BYTES", -1);

  private final String jsonName;
  private final int onnxEnum;
  private final String kserveName;
  private final int byteWidth;

  DType(String jsonName, int onnxEnum, String kserveName, int byteWidth) {
    this.jsonName = jsonName;
    this.onnxEnum = onnxEnum;
    this.kserveName = kserveName;
    this.byteWidth = byteWidth;
  }

  /** The tensor-JSON / manifest name, e.g. {@code "uint8"}. */
  public String jsonName() {
    return jsonName;
  }

  /** ONNX's {@code TensorProto.DataType} number. */
  public int onnxEnum() {
    return onnxEnum;
  }

  /** The KServe v2 / Open Inference Protocol datatype, e.g. {@code "FP32"}. */
  public String kserveName() {
    return kserveName;
  }

  /** Bytes per element in raw form; -1 for strings (variable). */
  public int byteWidth() {
    return byteWidth;
  }

  /** The dtypes an input of this dtype accepts and converts losslessly (spec/dtypes.json {@code widens_from}). */
  public Set<DType> widensFrom() {
    return switch (this) {
      case FLOAT32, INT32 -> Set.of(UINT8, INT8);
      case FLOAT64 -> Set.of(FLOAT32, UINT8, INT8, INT32);
      case INT64 -> Set.of(UINT8, INT8, INT32);
      default -> Set.of();
    };
  }

  @Override
  public String toString() {
    return jsonName;
  }

  /** The dtype named {@code name} in tensor JSON, or null if there is none. */
  public static DType fromName(String name) {
    for (DType d : values()) {
      if (d.jsonName.equals(name)) {
        return d;
      }
    }
    return null;
  }

  /** The dtype of a KServe datatype name, or null when onnxpipe has none of that name (FP16, UINT16, ...). */
  public static DType fromKserveName(String name) {
    for (DType d : values()) {
      if (d.kserveName.equals(name)) {
        return d;
      }
    }
    return null;
  }

  /** The dtype of an ONNX TensorProto type number, or null. */
  public static DType fromOnnxEnum(int onnxEnum) {
    for (DType d : values()) {
      if (d.onnxEnum == onnxEnum) {
        return d;
      }
    }
    return null;
  }

  /** Every tensor-JSON dtype name, for error messages. */
  public static List<String> names() {
    return Arrays.stream(values()).map(DType::jsonName).toList();
  }

  /** Every KServe datatype name, for error messages. */
  public static List<String> kserveNames() {
    return Arrays.stream(values()).map(DType::kserveName).toList();
  }
}
