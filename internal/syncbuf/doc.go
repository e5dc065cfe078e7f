// Package syncbuf provides a bytes.Buffer that several goroutines may write
// while a test reads it: the example programs' tests capture their output
// with it.
package syncbuf
