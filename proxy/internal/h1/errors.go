package h1

import (
	"errors"
	"strconv"
)

// ErrIncomplete is returned by ParseRequest and ParseResponse when buf
// holds the beginning of a head that may still be valid but not the
// whole of it: read more bytes, append them, and call again. Nothing was
// consumed. A head that cannot fit in Limits.MaxHeaderBytes is never
// incomplete: it is an *Error (431 for a request).
var ErrIncomplete = errors.New("h1: incomplete message head")

// Error is a message the parser refuses. Status is the HTTP status code to
// answer a client with: 400 (malformed, ambiguous), 414 (request-target
// too long), 417 (unsupported expectation), 431 (head too large), 501
// (unsupported transfer coding) or 505 (HTTP version not supported).
// Errors from ParseResponse and from Chunked carry 502 (Bad Gateway) for a
// target's response, and 400 for a client's chunked body; the caller
// answers that and closes the connection the message came from: after a
// refused message the bytes that follow cannot be framed.
//
// The values are shared and must not be modified.
type Error struct {
	Status int    // HTTP status code to answer with
	Reason string // what was wrong, in a few words
}

func (e *Error) Error() string {
	return "h1: " + strconv.Itoa(e.Status) + " " + e.Reason
}

// fault is one reason to refuse a message; its *Error values are built once
// per status class (see reqErrs and respErrs), so that refusing allocates
// nothing.
type fault uint8

const (
	faultNone fault = iota
	faultIncomplete
	faultBareLF
	faultBareCR
	faultLeadingEmptyLine
	faultMethod
	faultMethodLong
	faultTarget
	faultTargetLong
	faultTargetEscape
	faultTargetForm
	faultAsterisk
	faultConnectForm
	faultAuthority
	faultVersion
	faultVersionUnsupported
	faultStatusLine
	faultStatusCode
	faultReason
	faultHeadTooLarge
	faultTooManyFields
	faultObsFold
	faultFieldName
	faultEmptyFieldName
	faultSpaceBeforeColon
	faultFieldValue
	faultFieldLookalike
	faultHostMissing
	faultHostDup
	faultHostInvalid
	faultHostMismatch
	faultCLInvalid
	faultCLDup
	faultCLAndTE
	faultTEDup
	faultTEHTTP10
	faultTEMalformed
	faultTENotFinal
	faultTEUnknown
	faultTEBodyless
	faultCLBodyless
	faultConnOptions
	faultExpect
	faultChunkSize
	faultChunkSizeLong
	faultChunkExt
	faultChunkExtLong
	faultChunkLineLong
	faultChunkDataEnd
	faultTrailer
	faultTrailerDecl
	faultTrailerLong
	nFaults
)

// faults gives each fault its status for a request and its reason.
var faults = [nFaults]struct {
	status int
	reason string
}{
	faultIncomplete:         {400, "incomplete"},
	faultBareLF:             {400, "line ends in LF without CR"},
	faultBareCR:             {400, "CR not followed by LF"},
	faultLeadingEmptyLine:   {400, "empty line before the request line"},
	faultMethod:             {400, "invalid method"},
	faultMethodLong:         {400, "method too long"},
	faultTarget:             {400, "invalid byte in request-target"},
	faultTargetLong:         {414, "request-target too long"},
	faultTargetEscape:       {400, "invalid percent-encoding in request-target"},
	faultTargetForm:         {400, "invalid request-target"},
	faultAsterisk:           {400, "asterisk-form is for OPTIONS only"},
	faultConnectForm:        {400, "authority-form is for CONNECT only, and CONNECT needs it"},
	faultAuthority:          {400, "invalid authority in request-target"},
	faultVersion:            {400, "malformed HTTP version"},
	faultVersionUnsupported: {505, "HTTP version not supported"},
	faultStatusLine:         {400, "malformed status line"},
	faultStatusCode:         {400, "invalid status code"},
	faultReason:             {400, "invalid byte in reason phrase"},
	faultHeadTooLarge:       {431, "header section too large"},
	faultTooManyFields:      {431, "too many header fields"},
	faultObsFold:            {400, "obsolete line folding"},
	faultFieldName:          {400, "invalid byte in field name"},
	faultEmptyFieldName:     {400, "empty field name"},
	faultSpaceBeforeColon:   {400, "whitespace between field name and colon"},
	faultFieldValue:         {400, "invalid byte in field value"},
	faultFieldLookalike:     {400, "field name reads as Content-Length or Transfer-Encoding with '_' for '-'"},
	faultHostMissing:        {400, "missing Host"},
	faultHostDup:            {400, "more than one Host"},
	faultHostInvalid:        {400, "invalid Host"},
	faultHostMismatch:       {400, "Host differs from the request-target's authority"},
	faultCLInvalid:          {400, "invalid Content-Length"},
	faultCLDup:              {400, "more than one Content-Length"},
	faultCLAndTE:            {400, "both Content-Length and Transfer-Encoding"},
	faultTEDup:              {400, "more than one Transfer-Encoding"},
	faultTEHTTP10:           {400, "Transfer-Encoding in an HTTP/1.0 message"},
	faultTEMalformed:        {400, "malformed Transfer-Encoding"},
	faultTENotFinal:         {400, "chunked is not the final transfer coding"},
	faultTEUnknown:          {501, "unsupported transfer coding"},
	faultTEBodyless:         {400, "Transfer-Encoding in a 1xx or 204 response"},
	faultCLBodyless:         {400, "Content-Length in a 1xx or 204 response"},
	faultConnOptions:        {400, "too many Connection options"},
	faultExpect:             {417, "unsupported expectation"},
	faultChunkSize:          {400, "invalid chunk size"},
	faultChunkSizeLong:      {400, "chunk size too large"},
	faultChunkExt:           {400, "invalid chunk extension"},
	faultChunkExtLong:       {400, "chunk extensions too long"},
	faultChunkLineLong:      {400, "chunk line too long"},
	faultChunkDataEnd:       {400, "chunk data not followed by CRLF"},
	faultTrailer:            {400, "invalid trailer field"},
	faultTrailerLong:        {400, "trailer section too large"},
	faultTrailerDecl:        {400, "Trailer announces a framing field"},
}

// reqErrs and respErrs hold each fault's error: with its status for a
// client's request, with 502 for a target's response.
var reqErrs, respErrs = func() (req, resp [nFaults]*Error) {
	for f, d := range faults {
		req[f] = &Error{Status: d.status, Reason: d.reason}
		resp[f] = &Error{Status: 502, Reason: d.reason}
	}
	return req, resp
}()
