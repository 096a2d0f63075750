package dev.onnxpipe.core;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;

/**
 * The bytes of a document, read forward through a fixed 64 KiB window (a file) or from an array, with {@link
 * #seek} so the reader can come back to a {@code data} array written before its tensor's {@code dtype} and
 * {@code shape}. A file is never held in memory whole.
 */
final class ByteSource {
  private static final int WINDOW = 1 << 16;

  private final FileChannel channel;
  private final byte[] buf;
  private long base;
  private int pos;
  private int lim;

  private ByteSource(FileChannel channel, byte[] buf, int lim) {
    this.channel = channel;
    this.buf = buf;
    this.lim = lim;
  }

  static ByteSource of(FileChannel channel) {
    return new ByteSource(channel, new byte[WINDOW], 0);
  }

  static ByteSource of(byte[] bytes) {
    return new ByteSource(null, bytes, bytes.length);
  }

  /** The next byte (0..255), or -1 at the end. */
  int read() {
    if (pos == lim && !fill()) {
      return -1;
    }
    return buf[pos++] & 0xff;
  }

  /** The next byte without consuming it, or -1 at the end. */
  int peek() {
    if (pos == lim && !fill()) {
      return -1;
    }
    return buf[pos] & 0xff;
  }

  long position() {
    return base + pos;
  }

  void seek(long position) {
    if (position >= base && position <= base + lim) {
      pos = (int) (position - base);
      return;
    }
    try {
      channel.position(position);
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
    base = position;
    pos = 0;
    lim = 0;
  }

  private boolean fill() {
    if (channel == null) {
      return false;
    }
    base += lim;
    pos = 0;
    lim = 0;
    try {
      ByteBuffer bb = ByteBuffer.wrap(buf);
      int n;
      do {
        n = channel.read(bb);
      } while (n == 0);
      if (n < 0) {
        return false;
      }
      lim = n;
      return true;
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }
}
