package lb

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/lbkit/lbkit/flowtable"
	"github.com/lbkit/lbkit/proxy"
)

// WithFlowLog logs one record per TCP, TLS or UDP flow to logger, at Info
// level with the message "flow", when the flow ends: proto ("tcp" or
// "udp"), listener, group, client (host:port), target and target_id,
// bytes_in (client to target) and bytes_out, datagrams_in and
// datagrams_out (UDP), duration (seconds with millisecond resolution), and
// reason: client_close, target_close, idle_timeout, drain, shutdown,
// evicted (an unreplied UDP flow made room for a new one) or error (with
// the error). Connections and datagrams refused before they reached a
// target are logged too, with reason refused_acl, refused_table_full,
// refused_source_limit, refused_descriptors, refused_no_target,
// refused_connect, refused_proxy_header or refused_tls; under a flood at
// most 100 of those a second per listener, the next record saying how many
// were left out (suppressed). The record's time is the flow's end.
// Default: none.
func WithFlowLog(logger *slog.Logger) ListenerOption {
	return func(l *listenerConfig) { l.flowLog = logger }
}

// refusalLogRate bounds the refusal records of one listener's flow log per
// second.
const refusalLogRate = 100

// flowLogger writes one listener's flow log.
type flowLogger struct {
	log      *slog.Logger
	listener string

	mu         sync.Mutex // guards the refusal rate's state
	second     int64      // the Unix second of the records counted in n
	n          int        // refusal records logged in second
	suppressed int        // refusals not logged since the last record
}

// end logs a flow's end (proxy.TCP and proxy.UDP's OnFlowEnd).
func (f *flowLogger) end(e proxy.FlowEnd) {
	ctx := context.Background()
	if !f.log.Enabled(ctx, slog.LevelInfo) {
		return
	}
	attrs := make([]slog.Attr, 0, 13)
	attrs = append(attrs,
		slog.String("proto", protoName(e.Proto)),
		slog.String("listener", f.listener),
		slog.String("group", orDash(e.Group)),
		slog.String("client", e.Client.String()),
		slog.String("target", orDash(e.Target.Addr)),
		slog.String("target_id", orDash(e.Target.ID)),
		slog.Uint64("bytes_in", e.BytesIn),
		slog.Uint64("bytes_out", e.BytesOut),
	)
	if e.Proto == flowtable.UDP {
		attrs = append(attrs, slog.Uint64("datagrams_in", e.DatagramsIn), slog.Uint64("datagrams_out", e.DatagramsOut))
	}
	attrs = append(attrs,
		slog.String("duration", seconds(e.Duration)),
		slog.String("reason", e.Reason.String()),
	)
	if e.Err != nil {
		attrs = append(attrs, slog.String("error", e.Err.Error()))
	}
	f.log.LogAttrs(ctx, slog.LevelInfo, "flow", attrs...)
}

// refused logs a refusal, within the rate.
func (f *flowLogger) refused(r proxy.Refusal) {
	ctx := context.Background()
	if !f.log.Enabled(ctx, slog.LevelInfo) {
		return
	}
	now := time.Now().Unix()
	f.mu.Lock()
	if now != f.second {
		f.second, f.n = now, 0
	}
	if f.n >= refusalLogRate {
		f.suppressed++
		f.mu.Unlock()
		return
	}
	f.n++
	suppressed := f.suppressed
	f.suppressed = 0
	f.mu.Unlock()
	attrs := []slog.Attr{
		slog.String("proto", protoName(r.Proto)),
		slog.String("listener", f.listener),
		slog.String("client", r.Client.String()),
		slog.String("reason", "refused_"+r.Reason.String()),
	}
	if r.Err != nil {
		attrs = append(attrs, slog.String("error", r.Err.Error()))
	}
	if suppressed > 0 {
		attrs = append(attrs, slog.Int("suppressed", suppressed))
	}
	f.log.LogAttrs(ctx, slog.LevelInfo, "flow", attrs...)
}

func protoName(p flowtable.Proto) string {
	if p == flowtable.UDP {
		return "udp"
	}
	return "tcp"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// seconds formats d in seconds with millisecond resolution, as the access
// log's times.
func seconds(d time.Duration) string {
	ms := max(d.Milliseconds(), 0)
	return strconv.FormatInt(ms/1000, 10) + "." + strconv.FormatInt(1000+ms%1000, 10)[1:]
}
