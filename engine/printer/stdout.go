package printer

import (
	"bufio"
	"context"
	"fmt"
	"io"
)

// Stdout writes JSON lines to any writer (os.Stdout in the daemon).
type Stdout struct {
	name string
	w    io.Writer
	buf  *bufio.Writer
}

// NewStdout returns a printer named "stdout" writing to w.
func NewStdout(w io.Writer) *Stdout {
	return &Stdout{name: "stdout", w: w, buf: bufio.NewWriterSize(w, 64<<10)}
}

// Name implements Printer.
func (s *Stdout) Name() string { return s.name }

// Write implements Printer: one line per event, flushed once per batch.
func (s *Stdout) Write(_ context.Context, batch [][]byte) error {
	for _, ev := range batch {
		s.buf.Write(ev)
		s.buf.WriteByte('\n')
	}
	if err := s.buf.Flush(); err != nil {
		// A failed bufio.Writer stays failed; start over so a transient
		// error (a full pipe reader that recovers) does not end printing.
		s.buf = bufio.NewWriterSize(s.w, 64<<10)
		return fmt.Errorf("write %s: %w", s.name, err)
	}
	return nil
}

// Close implements Printer. The writer itself is not closed: it is not ours.
func (s *Stdout) Close(context.Context) error {
	if err := s.buf.Flush(); err != nil {
		return fmt.Errorf("flush %s: %w", s.name, err)
	}
	return nil
}
