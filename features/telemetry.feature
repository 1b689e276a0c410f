@telemetry
Feature: Telemetry - DO_NOT_TRACK=true stops diagnostic telemetry
  Judged from every attempt to leave the service's host (egress witness), every DNS lookup
  (sinkhole) and the outside world's collector, over start-up, chat, an error path and idle time.

  Background:
    Given the egress witness is shown to record an attempt to leave the service's host

  @AIS-TELEM-01
  Scenario Outline: With DO_NOT_TRACK=<value> nothing non-essential leaves, in any phase
    Given the service has just started with DO_NOT_TRACK=<value>
    When the reader chats following the LLM script "list-workflows"
    And the reader chats following the LLM script "provider-failure"
    And the service idles for the profile's idle window
    Then nothing left the service's host except to the lab infrastructure

    Examples:
      | value |
      | true  |
      | 1     |

  @AIS-TELEM-02
  Scenario: With telemetry left on, the witness does see the service's telemetry
    Given the service has just started with telemetry left on
    When the reader chats following the LLM script "list-workflows"
    Then the egress witness saw the service's telemetry
