"""Connections to outside vendors, their credentials, and rotating them (issue 12).

The rooms:
- `providers/`: the provider registry (GitHub, Jira Cloud and Data Center, a generic JSON REST
  API), pure: requests built and replies read, cursors and content hashes, what a record means
  to the factory. Sync, health and rotation call the same functions.
- `models`: IntegrationConnection (a tenant's connection to one provider), IntegrationCredential
  and its CredentialVersions (pending, current, previous, retired; the secret encrypted at rest
  with its key's fingerprint).
- `credentials` (the writes of connections and credentials, and `current_secret`, what every
  caller authenticates with), `keyring` (FERNET_KEYS by fingerprint, re-encryption:
  `manage.py reencrypt_secrets`), `vendor` (the requests a rotation makes of a vendor),
  `rotation` (CredentialRotationWorker's handler: AWS Secrets Manager's staged steps, each
  idempotent under the rotation token).
- `selectors`, `api`, `admin`.
"""
