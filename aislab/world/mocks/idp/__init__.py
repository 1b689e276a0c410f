"""Mock identity provider: real RSA keys, JWKS, OIDC discovery and token minting."""

from aislab.world.mocks.idp.tokens import BAD_TOKEN_VARIANTS, TokenFactory

__all__ = ["BAD_TOKEN_VARIANTS", "TokenFactory"]
