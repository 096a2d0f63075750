package dev.onnxpipe.core;

import java.math.BigDecimal;
import java.math.MathContext;
import java.math.RoundingMode;

/**
 * The shortest decimal that round-trips a float32 (or float64) at its own precision, written as Python's
 * {@code repr} writes it ({@code 0.1}, {@code 1.0}, {@code 0.00029527978}, {@code 2.5057761e-05},
 * {@code 1e+16}), so Java's tensor JSON is byte-identical to the Python runtime's and the Go runtime's.
 *
 * <p>Java 17's {@link Float#toString} round-trips but is not always the shortest ({@code 1.4E-45} where
 * {@code 1e-45} suffices); it only seeds the search here. Among the shortest decimals the closest to the
 * value is chosen, as Python and Go do.
 */
public final class FloatFormat {
  private FloatFormat() {}

  public static String format(float f) {
    if (f == 0) {
      return (Float.floatToRawIntBits(f) < 0) ? "-0.0" : "0.0";
    }
    BigDecimal exact = new BigDecimal(f);
    int seed = significantDigits(Float.toString(f));
    BigDecimal best = shortest(exact, seed, 9, d -> Float.parseFloat(d.toString()) == f);
    return repr(best);
  }

  public static String format(double v) {
    if (v == 0) {
      return (Double.doubleToRawLongBits(v) < 0) ? "-0.0" : "0.0";
    }
    BigDecimal exact = new BigDecimal(v);
    int seed = significantDigits(Double.toString(v));
    BigDecimal best = shortest(exact, seed, 17, d -> Double.parseDouble(d.toString()) == v);
    return repr(best);
  }

  private interface RoundTrip {
    boolean test(BigDecimal d);
  }

  /** The closest decimal of the fewest significant digits that round-trips; {@code seed} digits always do. */
  private static BigDecimal shortest(BigDecimal exact, int seed, int max, RoundTrip ok) {
    int hi = Math.min(Math.max(seed, 1), max); // round-trips (the closest hi-digit decimal is at least as close)
    BigDecimal best = round(exact, hi);
    if (!ok.test(best)) {
      // cannot happen for Java's toString seed; fall back to the maximum precision, which always round-trips
      hi = max;
      best = round(exact, max);
    }
    int lo = 0; // 0 digits never round-trip; round-tripping is monotone in the digit count
    while (hi - lo > 1) {
      int mid = (lo + hi) >>> 1;
      BigDecimal d = round(exact, mid);
      if (ok.test(d)) {
        hi = mid;
        best = d;
      } else {
        lo = mid;
      }
    }
    return best.stripTrailingZeros();
  }

  private static BigDecimal round(BigDecimal exact, int digits) {
    return exact.round(new MathContext(digits, RoundingMode.HALF_EVEN));
  }

  /** Significant digits in Java's {@code toString} output ({@code 1.25E-4} -> 3, {@code 100.0} -> 1). */
  private static int significantDigits(String s) {
    int e = s.indexOf('E');
    String mantissa = (e >= 0 ? s.substring(0, e) : s).replace("-", "").replace(".", "");
    int start = 0;
    while (start < mantissa.length() - 1 && mantissa.charAt(start) == '0') {
      start++;
    }
    int end = mantissa.length();
    while (end > start + 1 && mantissa.charAt(end - 1) == '0') {
      end--;
    }
    return end - start;
  }

  /** Python's float repr of a decimal: positional for 1e-4 <= |x| < 1e16, else d.ddde+XX. */
  private static String repr(BigDecimal d) {
    String sign = d.signum() < 0 ? "-" : "";
    String digits = d.unscaledValue().abs().toString();
    int exp10 = digits.length() - 1 - d.scale(); // value = digits[0].digits[1:] x 10^exp10
    StringBuilder sb = new StringBuilder(sign);
    if (exp10 < -4 || exp10 >= 16) {
      sb.append(digits.charAt(0));
      if (digits.length() > 1) {
        sb.append('.').append(digits, 1, digits.length());
      }
      sb.append('e').append(exp10 < 0 ? '-' : '+');
      int a = Math.abs(exp10);
      sb.append(a < 10 ? "0" : "").append(a);
    } else if (exp10 < 0) {
      sb.append("0.");
      sb.append("0".repeat(-exp10 - 1)).append(digits);
    } else if (digits.length() <= exp10 + 1) {
      sb.append(digits).append("0".repeat(exp10 + 1 - digits.length())).append(".0");
    } else {
      sb.append(digits, 0, exp10 + 1).append('.').append(digits, exp10 + 1, digits.length());
    }
    return sb.toString();
  }
}
