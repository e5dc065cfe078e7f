package healthcheck

import "sync"

// notifier delivers changes to the WithOnChange function from one
// goroutine, in the order they were queued, so the function never runs
// under the Monitor's lock and never runs twice at once.
type notifier struct {
	fn    func(Change)
	ready chan struct{} // buffered 1: the queue is not empty, or closing
	done  chan struct{} // closed when the goroutine returns

	mu      sync.Mutex // guards queue and closing
	queue   []Change
	closing bool
}

func newNotifier(fn func(Change)) *notifier {
	n := &notifier{fn: fn, ready: make(chan struct{}, 1), done: make(chan struct{})}
	go n.run()
	return n
}

// push queues c. The Monitor's lock is held, which orders the changes.
func (n *notifier) push(c Change) {
	n.mu.Lock()
	n.queue = append(n.queue, c)
	n.mu.Unlock()
	n.signal()
}

func (n *notifier) signal() {
	select {
	case n.ready <- struct{}{}:
	default:
	}
}

func (n *notifier) run() {
	defer close(n.done)
	var batch []Change
	for range n.ready {
		n.mu.Lock()
		batch, n.queue = n.queue, batch[:0]
		closing := n.closing
		n.mu.Unlock()
		for i := range batch {
			n.fn(batch[i])
			batch[i] = Change{}
		}
		if closing {
			n.mu.Lock()
			empty := len(n.queue) == 0
			n.mu.Unlock()
			if empty {
				return
			}
		}
	}
}

// close delivers what is queued, then stops the goroutine.
func (n *notifier) close() {
	n.mu.Lock()
	n.closing = true
	n.mu.Unlock()
	n.signal()
	<-n.done
}
