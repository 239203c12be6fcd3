package store

import (
	"fmt"
	"log/slog"
)

// natsLogger routes the embedded NATS server's log lines into slog.
type natsLogger struct{ log *slog.Logger }

func newNATSLogger(l *slog.Logger) natsLogger {
	return natsLogger{log: l.With("component", "jetstream")}
}

func (n natsLogger) Noticef(format string, v ...any) { n.log.Debug(fmt.Sprintf(format, v...)) }
func (n natsLogger) Warnf(format string, v ...any)   { n.log.Warn(fmt.Sprintf(format, v...)) }
func (n natsLogger) Fatalf(format string, v ...any)  { n.log.Error(fmt.Sprintf(format, v...)) }
func (n natsLogger) Errorf(format string, v ...any)  { n.log.Error(fmt.Sprintf(format, v...)) }
func (n natsLogger) Debugf(format string, v ...any)  { n.log.Debug(fmt.Sprintf(format, v...)) }
func (n natsLogger) Tracef(format string, v ...any)  {}
