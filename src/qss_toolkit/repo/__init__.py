"""The signed apt and dnf repositories: publishing them and the signing key."""
