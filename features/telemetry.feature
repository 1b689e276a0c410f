@telemetry
Feature: Telemetry - DO_NOT_TRACK=true stops diagnostic telemetry
  Judged from every attempt to leave the service's host in any IP protocol (the egress witness:
  TCP and UDP; the packet witness: ICMP and raw IP; IPv4 and IPv6), every DNS lookup (sinkhole),
  the outside world's collector and every request to the LLM host that is not its API: over
  start-up, chat, an error path and idle time within a scenario, and over the service's whole life,
  shutdown included, also of an instance kept idle for the whole run. Silence counts only where the
  service was seen doing the work: started, chatted with the LLM, ran tools, took the error path.

  Background:
    Given the egress witness is shown to record an attempt to leave the service's host

  @AIS-TELEM-01
  Scenario Outline: With <opt-out> nothing non-essential leaves, in any phase
    Given the service has just started with <opt-out>
    When the reader chats following the LLM script "one-tool"
    And the reader chats following the LLM script "provider-failure"
    And the service idles for the profile's idle window
    Then nothing non-essential left the service, and the LLM host was asked for nothing but its API

    Examples:
      | opt-out                   |
      | DO_NOT_TRACK=true         |
      | DO_NOT_TRACK=1            |
      | its own telemetry switch  |

  @AIS-TELEM-01 @lifetime
  Scenario: Over the service's whole life, shutdown included, an opt-out is never broken
    When the service's life ends: it is stopped and its last words are recorded
    Then nothing non-essential left in any period with a telemetry opt-out configured

  @AIS-TELEM-02
  Scenario: With telemetry left on, the witness does see the service's telemetry
    Given the service has just started with telemetry left on
    When the reader chats following the LLM script "one-tool"
    And the reader chats following the LLM script "provider-failure"
    Then the egress witness saw the service's telemetry
