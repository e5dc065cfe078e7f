package sticky

import "errors"

var (
	// ErrInvalidOption is wrapped by every error about an option: a value
	// out of range, or a nil option. (An option given to a kind it does
	// not apply to does not compile: see SourceIPOption.)
	ErrInvalidOption = errors.New("invalid option")

	// ErrInvalidKey is wrapped by every error about a cookie key (too
	// short). Errors name the key's position and length, never its bytes.
	ErrInvalidKey = errors.New("invalid key")
)
