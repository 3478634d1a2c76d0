// libpq, PostgreSQL's C client library (Debian: libpq-dev), for the change feed's replication connection.
#include <libpq-fe.h>
