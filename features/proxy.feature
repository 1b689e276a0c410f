@proxy
Feature: Proxy - outbound traffic honours HTTP_PROXY, HTTPS_PROXY and NO_PROXY
  Judged from the real proxies' access logs, the provider's record of who connected, and the
  egress witness on the service's host, which records every attempt to go around the proxy
  (IPv4 and IPv6, every IP protocol). Each claim judges only the traffic it is about: the LLM's
  here, telemetry's in its own rule. The proxy variables are set in one spelling at a time: upper
  case, as the vendor documents them, or lower case, as curl reads HTTP_PROXY.

  Background:
    Given the egress witness is shown to record an attempt to leave the service's host

  Rule: The model provider is reached through the proxy, only

    @AIS-PROXY-01
    Scenario Outline: Every request to a third-party LLM over <scheme> goes through <proxy>, failing or not, the variables in <spelling>
      Given the service uses a third-party LLM over <scheme> through <proxy>, the variables in <spelling>
      When the reader chats following the LLM script "provider-failure" 3 times
      And the reader chats following the LLM script "one-tool"
      Then the service made no direct attempt to reach the LLM provider
      And every LLM request reached the provider through <proxy>, as a <scheme> request
      And the chat succeeded

      Examples: each spelling alone: upper case as the vendor documents it, lower case as curl reads it
        | scheme | proxy     | spelling   |
        | https  | tinyproxy | upper case |
        | https  | squid     | lower case |
        | http   | tinyproxy | lower case |
        | http   | squid     | upper case |

    @AIS-PROXY-02
    Scenario Outline: NO_PROXY destinations (the control plane, the identity provider) are reached directly, with <proxy> in use, the variables in <spelling>
      Given the service uses a third-party LLM over https through <proxy>, the variables in <spelling>
      When the reader chats following the LLM script "one-tool"
      Then the control plane and the identity provider were reached directly, never through a proxy

      Examples:
        | proxy     | spelling   |
        | tinyproxy | upper case |
        | squid     | lower case |

    @AIS-PROXY-02
    Scenario Outline: Without NO_PROXY, the control plane and the identity provider too are reached through <proxy>, the variables in <spelling>
      Given the service uses a third-party LLM over https through <proxy>, with no NO_PROXY, the variables in <spelling>
      When the reader chats following the LLM script "one-tool"
      Then the control plane and the identity provider were reached through <proxy> only
      And every LLM request reached the provider through <proxy>, as a https request

      Examples:
        | proxy     | spelling   |
        | tinyproxy | lower case |
        | squid     | upper case |

  Rule: Telemetry takes the same road

    @AIS-PROXY-03
    Scenario Outline: Telemetry goes through <proxy> too, the variables in <spelling>
      Given the service has just started with telemetry on, a third-party LLM and <proxy>, the variables in <spelling>
      When the reader chats following the LLM script "one-tool"
      Then the service's telemetry reached the outside world through <proxy>, never directly

      Examples:
        | proxy     | spelling   |
        | tinyproxy | upper case |
        | squid     | lower case |

  Rule: A broken proxy is a closed door, however often it is tried

    @AIS-PROXY-04
    Scenario Outline: When the proxy is <state>, the service fails closed, chat after chat, the variables in <spelling>
      Given the service uses a third-party LLM through a proxy that is <state>, the variables in <spelling>
      When the reader chats following the LLM script "one-tool" 5 times
      Then nothing reached the LLM provider and no attempt to reach it went around the proxy

      Examples:
        | state              | spelling   |
        | down               | upper case |
        | tinyproxy refusing | lower case |
        | squid refusing     | upper case |

    @AIS-PROXY-04
    Scenario: When the proxy is down, the service fails closed across a restart too
      Given the service uses a third-party LLM through a proxy that is down, the variables in upper case
      When the reader chats following the LLM script "one-tool" 3 times
      And the service restarts with the same configuration
      And the reader chats following the LLM script "one-tool" 3 times
      Then nothing reached the LLM provider and no attempt to reach it went around the proxy

    @AIS-PROXY-04 @lifetime
    Scenario: Over the whole life of every instance with a broken proxy, shutdown included, nothing went around it
      When the service's life ends: it is stopped and its last words are recorded
      Then nothing reached the LLM provider, or tried to, in any period with a broken proxy configured
