package dev.onnxpipe;

import java.util.Arrays;
import java.util.List;

/** Element types of onnxpipe tensors, named as in tensor JSON (numpy names). */
public enum DType {
  FLOAT32("float32"),
  FLOAT64("float64"),
  INT64("int64"),
  INT32("int32"),
  /** Unsigned bytes (pixels): Java {@code byte} storage, values 0..255 (use {@link Byte#toUnsignedInt}). */
  UINT8("uint8"),
  INT8("int8"),
  BOOL("bool"),
  STRING("string");

  private final String jsonName;

  DType(String jsonName) {
    this.jsonName = jsonName;
  }

  /** The tensor-JSON / manifest name, e.g. {@code "uint8"}. */
  public String jsonName() {
    return jsonName;
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

  /** Every tensor-JSON dtype name, for error messages. */
  public static List<String> names() {
    return Arrays.stream(values()).map(DType::jsonName).toList();
  }
}
