/* header.h — HTTP request header lines built from configuration (tokens, content types).
 *
 * A value that holds a control character (CR, LF, NUL's neighbours, DEL) would end the header
 * line and inject another one (`token: "abc\r\nX-Evil: 1"`): such values are refused, never
 * sent.  Tokens are checked when the kubeconfig or token file is read, and again here for every
 * header line. */
#ifndef KM_HEADER_H
#define KM_HEADER_H

#include "operator/base/buf.h"
#include "operator/base/err.h"

/* 1 when v (may be NULL: 0) holds no control character (bytes 0x00-0x1f and 0x7f; a horizontal
 * tab too, which a bearer token never holds), else 0. */
int km_header_value_ok(const char *v);

/* Appends "name: value" to b (b is reset first).  Failure: KM_EINVAL when value is not
 * km_header_value_ok (the message names the header, never the value: it may be a secret),
 * KM_ENOMEM / KM_ETOOBIG from the buffer; b's contents are then unspecified (still owned by the
 * caller, who cleans it up). */
km_status km_header_line(km_buf *b, const char *name, const char *value, km_err *err);

#endif
