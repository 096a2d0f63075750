package dev.onnxpipe.sidecar;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.protobuf.ByteString;
import dev.onnxpipe.core.DType;
import dev.onnxpipe.core.ErrorCode;
import dev.onnxpipe.core.OnnxpipeException;
import dev.onnxpipe.core.Tensor;
import dev.onnxpipe.serve.inference.InferTensorContents;
import org.junit.jupiter.api.Test;

/** Raw and typed encodings without a server. */
class CodecTest {
  private static Tensor roundTrip(Tensor t) {
    return Codec.decodeRaw("x", t.dtype(), t.shape(), Codec.encodeRaw(t));
  }

  @Test
  void rawIsLittleEndianRowMajor() {
    ByteString raw = Codec.encodeRaw(Tensor.ofInts(new int[] {1, 0x01020304}, 2));
    assertArrayEquals(new byte[] {1, 0, 0, 0, 4, 3, 2, 1}, raw.toByteArray());
    assertArrayEquals(new byte[] {0, 0, (byte) 0xc0, 0x3f}, Codec.encodeRaw(Tensor.scalar(1.5f)).toByteArray());
    assertArrayEquals(new byte[] {1, 0, 1}, Codec.encodeRaw(Tensor.ofBooleans(new boolean[] {true, false, true}, 3)).toByteArray());
  }

  @Test
  void bytesAreLengthPrefixedUtf8() {
    ByteString raw = Codec.encodeRaw(Tensor.ofStrings("é", ""));
    assertArrayEquals(new byte[] {2, 0, 0, 0, (byte) 0xc3, (byte) 0xa9, 0, 0, 0, 0}, raw.toByteArray());
  }

  @Test
  void everyDatatypeRoundTrips() {
    assertArrayEquals(new float[] {1.5f, Float.NaN, -0f}, roundTrip(Tensor.ofFloats(new float[] {1.5f, Float.NaN, -0f}, 3)).floats());
    assertArrayEquals(new double[] {0.1, 1e300}, roundTrip(Tensor.ofDoubles(new double[] {0.1, 1e300}, 1, 2)).doubles());
    assertArrayEquals(new long[] {Long.MIN_VALUE, 1L << 60}, roundTrip(Tensor.ofLongs(new long[] {Long.MIN_VALUE, 1L << 60}, 2)).longs());
    assertArrayEquals(new int[] {-7}, roundTrip(Tensor.scalar(-7)).ints());
    Tensor u8 = roundTrip(Tensor.ofUint8(new byte[] {(byte) 255, 0}, 2));
    assertEquals(DType.UINT8, u8.dtype());
    assertArrayEquals(new int[] {255, 0}, u8.unsignedBytes());
    Tensor i8 = roundTrip(Tensor.ofInt8(new byte[] {(byte) 255, 0}, 2));
    assertEquals(DType.INT8, i8.dtype());
    assertArrayEquals(new byte[] {-1, 0}, i8.bytes());
    assertThrows(IllegalStateException.class, i8::unsignedBytes);
    assertArrayEquals(new boolean[] {true, false}, roundTrip(Tensor.ofBooleans(new boolean[] {true, false}, 2, 1)).booleans());
    String[] s = {"", "Crème brûlée", "東京タワー 🗼"};
    assertArrayEquals(s, roundTrip(Tensor.ofStrings(s, 1, 3)).strings());
    Tensor empty = roundTrip(Tensor.ofFloats(new float[0], 0, 3));
    assertArrayEquals(new long[] {0, 3}, empty.shape());
  }

  @Test
  void aResponseThatDoesNotMatchItsShapeIsRuntime() {
    SidecarException e = assertThrows(SidecarException.class,
        () -> Codec.decodeRaw("score", DType.FLOAT32, new long[] {1, 3}, ByteString.copyFrom(new byte[8])));
    assertEquals(ErrorCode.RUNTIME, e.code());
    assertTrue(e.getMessage().contains("'score'") && e.getMessage().contains("8 bytes") && e.getMessage().contains("12"),
        e.getMessage());
    // a huge claimed shape fails on the data's size, before any allocation
    SidecarException strings = assertThrows(SidecarException.class,
        () -> Codec.decodeRaw("label", DType.STRING, new long[] {1 << 30}, ByteString.copyFrom(new byte[4])));
    assertEquals(ErrorCode.RUNTIME, strings.code());
    SidecarException truncated = assertThrows(SidecarException.class,
        () -> Codec.decodeRaw("label", DType.STRING, new long[] {1}, ByteString.copyFrom(new byte[] {9, 0, 0, 0, 'a'})));
    assertTrue(truncated.getMessage().contains("claims 9 bytes"), truncated.getMessage());
    SidecarException utf8 = assertThrows(SidecarException.class,
        () -> Codec.decodeRaw("label", DType.STRING, new long[] {1}, ByteString.copyFrom(new byte[] {1, 0, 0, 0, (byte) 0xff})));
    assertTrue(utf8.getMessage().contains("UTF-8"), utf8.getMessage());
    SidecarException fp16 = assertThrows(SidecarException.class, () -> Codec.outputType("h", "FP16"));
    assertTrue(fp16.getMessage().contains("FP16"), fp16.getMessage());
  }

  @Test
  void typedContentsDecodeToo() {
    InferTensorContents c = InferTensorContents.newBuilder().addUintContents(255).addUintContents(7).build();
    assertArrayEquals(new int[] {255, 7}, Codec.decodeTyped("p", DType.UINT8, new long[] {2}, c).unsignedBytes());
    InferTensorContents bad = InferTensorContents.newBuilder().addUintContents(256).build();
    assertThrows(SidecarException.class, () -> Codec.decodeTyped("p", DType.UINT8, new long[] {1}, bad));
    InferTensorContents few = InferTensorContents.newBuilder().addFp32Contents(1f).build();
    SidecarException e = assertThrows(SidecarException.class, () -> Codec.decodeTyped("s", DType.FLOAT32, new long[] {2}, few));
    assertTrue(e.getMessage().contains("fp32_contents has 1"), e.getMessage());
  }

  @Test
  void inputValuesBecomeTensorsOrNameTheProblem() {
    assertArrayEquals(new long[] {3}, Codec.toTensor("f", new float[3]).shape());
    assertArrayEquals(new long[] {}, Codec.toTensor("t", 0.5f).shape());
    assertEquals(DType.FLOAT64, Codec.toTensor("t", 0.5).dtype());
    assertEquals(DType.STRING, Codec.toTensor("s", "hi").dtype());
    SidecarException bytes = assertThrows(SidecarException.class, () -> Codec.toTensor("image", new byte[2]));
    assertTrue(bytes.getMessage().contains("input 'image'") && bytes.getMessage().contains("ofInt8"), bytes.getMessage());
    SidecarException other = assertThrows(SidecarException.class, () -> Codec.toTensor("x", new short[2]));
    assertTrue(other.getMessage().contains("short[] given"), other.getMessage());
    assertEquals(ErrorCode.INVALID_INPUT,
        assertThrows(SidecarException.class, () -> Codec.toTensor("x", null)).code());
  }

  @Test
  void tensorsCheckTheirShape() {
    OnnxpipeException e = assertThrows(OnnxpipeException.class, () -> Tensor.ofFloats(new float[5], 2, 3));
    assertEquals(ErrorCode.INVALID_INPUT, e.code());
    assertTrue(e.getMessage().contains("[2, 3] needs 6") && e.getMessage().contains("has 5"), e.getMessage());
    assertThrows(OnnxpipeException.class, () -> Tensor.ofFloats(new float[0], 0, -1));
    assertThrows(OnnxpipeException.class, () -> Tensor.ofStrings(new String[] {null}, 1));
    assertThrows(IllegalStateException.class, () -> Tensor.scalar(1f).longs());
  }
}
