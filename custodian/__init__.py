"""The key custodian: holds one share of a ``paillier`` round's decryption key and releases partial decryptions."""
