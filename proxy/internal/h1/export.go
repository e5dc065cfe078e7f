package h1

// KindOf returns the kind of a field name: KindOther for a name the parser
// does not know. Front ends that build Headers from another representation
// (net/http's) use it to describe fields as the parser would.
func KindOf[T Text](name T) Kind { return kindOf([]byte(name)) }

// HopKind reports whether fields of kind k are hop-by-hop whatever the
// Connection field says.
func HopKind(k Kind) bool { return hopKind(k) }
