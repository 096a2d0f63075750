package dev.onnxpipe.core;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;

import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.junit.jupiter.api.Test;

/** The Java tables (DType, ErrorCode, Limits) are spec/dtypes.json, errors.json and limits.json, entry by entry. */
class SpecTablesTest {
  @Test
  void dtypesAreSpecDtypes() {
    List<?> rows = (List<?>) ((Map<?, ?>) Spec.json("spec/dtypes.json")).get("dtypes");
    assertEquals(rows.size(), DType.values().length, "one DType per spec dtype");
    for (Object o : rows) {
      Map<?, ?> row = (Map<?, ?>) o;
      String name = (String) row.get("name");
      DType d = DType.fromName(name);
      assertNotNull(d, "spec dtype " + name);
      assertEquals(row.get("kserve"), d.kserveName(), name);
      assertEquals(row.get("onnx_enum").toString(), Integer.toString(d.onnxEnum()), name);
      Object bytes = row.get("bytes");
      assertEquals(bytes == null ? "-1" : bytes.toString(), Integer.toString(d.byteWidth()), name);
      Set<DType> from = new HashSet<>();
      for (Object w : (List<?>) row.get("widens_from")) {
        from.add(DType.fromName((String) w));
      }
      assertEquals(from, d.widensFrom(), name + " widens_from");
    }
  }

  @Test
  void errorCodesAreSpecCodes() {
    List<?> rows = (List<?>) ((Map<?, ?>) Spec.json("spec/errors.json")).get("codes");
    int inSpec = 0;
    for (Object o : rows) {
      Map<?, ?> row = (Map<?, ?>) o;
      String name = (String) row.get("code");
      ErrorCode c = ErrorCode.fromName(name);
      assertNotNull(c, "spec code " + name);
      Object exit = row.get("exit");
      assertEquals(exit != null, c.hasExitStatus(), name);
      if (exit != null) {
        assertEquals(exit.toString(), Integer.toString(c.exitStatus()), name + " exit");
      }
      assertEquals(row.get("grpc"), c.grpcStatus(), name + " grpc");
      inSpec++;
    }
    // every Java code is a spec code (UNAVAILABLE, the sidecar client's own, is in the table as client_only)
    assertEquals(ErrorCode.values().length, inSpec);
  }

  @Test
  void limitDefaultsAreSpecDefaults() {
    List<?> rows = (List<?>) ((Map<?, ?>) Spec.json("spec/limits.json")).get("limits");
    Limits d = Limits.defaults();
    for (Object o : rows) {
      Map<?, ?> row = (Map<?, ?>) o;
      long want = Long.parseLong(row.get("default").toString());
      switch ((String) row.get("name")) {
        case "max_elements" -> assertEquals(want, d.maxElements());
        case "max_string_bytes" -> assertEquals(want, d.maxStringBytes());
        case "max_document_bytes" -> assertEquals(want, d.maxDocumentBytes());
        default -> throw new AssertionError("a limit Java does not know: " + row.get("name"));
      }
    }
  }
}
