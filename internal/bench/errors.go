package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"

	"github.com/firebreak/firebreak/internal/matrixclient"
	"github.com/valyala/fasthttp"
)

// errCode names an error for the report: the Matrix errcode when the server sent one, the
// HTTP status when it did not, or the kind of transport failure.
func errCode(err error) string {
	var ae *matrixclient.Error
	var ne net.Error
	switch {
	case errors.As(err, &ae) && ae.Code != "":
		return ae.Code
	case errors.As(err, &ae):
		return fmt.Sprintf("HTTP_%d", ae.Status)
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, fasthttp.ErrTimeout), errors.Is(err, fasthttp.ErrDialTimeout):
		return "TIMEOUT"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "CONN_REFUSED"
	case errors.Is(err, syscall.ECONNRESET):
		return "CONN_RESET"
	case errors.Is(err, syscall.EADDRNOTAVAIL), errors.Is(err, syscall.EMFILE):
		return "CLIENT_OUT_OF_SOCKETS"
	case errors.As(err, &ne) && ne.Timeout():
		return "TIMEOUT"
	}
	return "NETWORK"
}
