"""The service's network configurations the network claims are about, as env overrides in the
names the driver declares: which LLM (the lab's, or a third-party provider), which proxy (and in
which spelling of the variables), and which telemetry opt-out."""

from __future__ import annotations

PROVIDER_URLS = {"https": "https://api.openai.com/v1", "http": "http://llm.provider.example/v1"}
PROXY_DOWN_PORT = 3999  # nothing listens there
# How the proxy variables are spelt: as the vendor documents them (upper case), as curl reads
# HTTP_PROXY (lower case only), or both. Each spelling alone must be honoured.
SPELLINGS = {"upper case": (str.upper,), "lower case": (str.lower,), "both cases": (str.upper, str.lower)}


def network_env(lab, *, llm: str = "lab", proxy: str | None = None, refusing: bool = False, no_proxy: bool = True,
                telemetry: str = "off", spelling: str = "upper case") -> dict[str, str]:
    """Service env overrides for one network configuration.

    telemetry: "on" (no switch set), "off" (DO_NOT_TRACK=true and the service's own switches),
    "dnt:VALUE" (DO_NOT_TRACK=VALUE alone) or "own" (the service's own switches alone)."""
    net = lab.driver.network
    env = {net.ca_file_env: lab.values()["lab.ca_file"]}  # the fake outside world speaks TLS under the lab CA
    if llm != "lab":
        env[net.llm_url_env] = PROVIDER_URLS[llm]
    if proxy:
        url = f"http://{lab.target.address('squid')}:{PROXY_DOWN_PORT}" if proxy == "down" else lab.proxy_url(proxy, refusing)
        settings = {"https_proxy": url, "http_proxy": url}
        if no_proxy:  # in-cluster services are reached directly, as a real install lists them
            settings["no_proxy"] = ",".join(lab.target.address(h) for h in ("controlplane", "idp"))
        env.update({spell(k): v for k, v in settings.items() for spell in SPELLINGS[spelling]})
    if telemetry == "off":
        env.update(DO_NOT_TRACK="true", **net.telemetry_off_env)
    elif telemetry == "own":
        env.update(DO_NOT_TRACK="", **net.telemetry_off_env)
    else:
        env["DO_NOT_TRACK"] = telemetry.removeprefix("dnt:") if telemetry.startswith("dnt:") else ""
    return env


def proxy_setting(config: dict[str, str]) -> str | None:
    """The proxy an instance was configured with, whichever spelling set it."""
    return next((config[k] for k in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy") if config.get(k)), None)
