// Package errdefs defines the error classes shared by every berth package.
// Callers wrap them with %w and the object they concern, and check them with
// the Is* helpers; gRPC codes and exit codes are chosen only at the edges.
package errdefs

import (
	"errors"
	"fmt"
	"strings"
)

var (
	ErrNotFound        = errors.New("not found")
	ErrAlreadyExists   = errors.New("already exists")
	ErrInvalidArgument = errors.New("invalid argument")
	ErrFailedPrecond   = errors.New("failed precondition")
	ErrNotImplemented  = errors.New("not implemented")
	ErrUnavailable     = errors.New("unavailable")
)

func IsNotFound(err error) bool        { return errors.Is(err, ErrNotFound) }
func IsAlreadyExists(err error) bool   { return errors.Is(err, ErrAlreadyExists) }
func IsInvalidArgument(err error) bool { return errors.Is(err, ErrInvalidArgument) }
func IsFailedPrecond(err error) bool   { return errors.Is(err, ErrFailedPrecond) }
func IsNotImplemented(err error) bool  { return errors.Is(err, ErrNotImplemented) }
func IsUnavailable(err error) bool     { return errors.Is(err, ErrUnavailable) }

// Said is another program's message msg as an error of class cls, named
// once even when msg already ends with it (berth-runtime's messages do).
func Said(msg string, cls error) error {
	return fmt.Errorf("%s: %w", strings.TrimSuffix(msg, ": "+cls.Error()), cls)
}
