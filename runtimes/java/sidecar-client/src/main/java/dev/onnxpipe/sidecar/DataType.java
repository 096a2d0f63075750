package dev.onnxpipe.sidecar;

import java.util.ArrayList;
import java.util.List;

/**
 * The tensor datatypes onnxpipe serves: the protocol's name ({@code FP32}, ... as in ModelMetadata and
 * ModelInfer) beside the tensor-JSON / numpy name ({@code float32}, ..., docs/tensor-json.md).
 */
public enum DataType {
  FP32("float32", 4),
  FP64("float64", 8),
  INT64("int64", 8),
  INT32("int32", 4),
  UINT8("uint8", 1),
  INT8("int8", 1),
  BOOL("bool", 1),
  /** UTF-8 strings; raw, each element is a 4-byte little-endian length followed by the bytes. */
  BYTES("string", -1);

  private final String jsonName;
  private final int width;

  DataType(String jsonName, int width) {
    this.jsonName = jsonName;
    this.width = width;
  }

  /** The protocol's name: {@code FP32}, {@code UINT8}, {@code BYTES}, ... */
  public String wireName() {
    return name();
  }

  /** The tensor-JSON dtype: {@code float32}, {@code uint8}, {@code string}, ... */
  public String jsonName() {
    return jsonName;
  }

  /** Bytes per element in raw form; -1 for BYTES (variable). */
  int width() {
    return width;
  }

  /** The datatype of a protocol name, or null when onnxpipe has none of that name (FP16, UINT16, ...). */
  static DataType fromWireName(String name) {
    for (DataType t : values()) {
      if (t.name().equals(name)) {
        return t;
      }
    }
    return null;
  }

  /** The datatype of a tensor-JSON dtype, or null when there is none. */
  static DataType fromJsonName(String name) {
    for (DataType t : values()) {
      if (t.jsonName.equals(name)) {
        return t;
      }
    }
    return null;
  }

  static List<String> jsonNames() {
    List<String> out = new ArrayList<>();
    for (DataType t : values()) {
      out.add(t.jsonName);
    }
    return out;
  }

  static List<String> wireNames() {
    List<String> out = new ArrayList<>();
    for (DataType t : values()) {
      out.add(t.name());
    }
    return out;
  }
}
