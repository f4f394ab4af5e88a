"""The registry: the node's source of truth — schema, migrations, store, identifier
grammar, templates, permissions and the SNMS-compatible admin API."""

import warnings

from cryptography.utils import CryptographyDeprecationWarning

# Handle identities may hold DSA keys (HS_DSAKEY, RFC 3652): the node must read
# and verify them to interoperate. cryptography warns that DSA is deprecated for
# new designs, which interoperability is not; the warning would only be noise.
warnings.filterwarnings("ignore", "DSA is deprecated", CryptographyDeprecationWarning)
