package flowtable

import "errors"

// The errors of LoadOrCreate are returned unwrapped, so that refusing a flow
// never allocates: a flood of spoofed new flows against a full table must cost
// the table nothing but a counter. Callers wrap them with their own context.
var (
	// ErrFull is returned by LoadOrCreate when the table holds its maximum
	// number of flows (WithMaxFlows). The refusal is counted in
	// RejectedFlowCount. Only unreplied flows (WithUnrepliedTimeout) are
	// evicted to make room first; it is returned when there is none.
	ErrFull = errors.New("flowtable: table full")

	// ErrSourceLimit is returned by LoadOrCreate when the flow's source
	// address already has its maximum number of flows
	// (WithMaxFlowsPerSource). The refusal is counted in
	// RejectedSourceFlowCount.
	ErrSourceLimit = errors.New("flowtable: too many flows from source")

	// ErrInvalidKey is returned by LoadOrCreate for a key whose protocol is
	// neither TCP nor UDP or whose source or destination address is the zero
	// netip.Addr. Lookup and Delete report such keys as absent.
	ErrInvalidKey = errors.New("flowtable: invalid flow key")

	// ErrClosed is returned by LoadOrCreate after Close: a closed table
	// expires nothing, so it admits no new flow.
	ErrClosed = errors.New("flowtable: table closed")

	// ErrNoFlow is returned by SetFlowTimeout when the table holds no flow
	// with the key.
	ErrNoFlow = errors.New("flowtable: no such flow")

	// ErrInvalidOption is wrapped by every error about an option or a
	// timeout (New, SetIdleTimeout, SetFlowTimeout).
	ErrInvalidOption = errors.New("invalid option")
)
