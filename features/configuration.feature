@configuration
Feature: Configuration - the customer's Helm values give the deployment they ask for
  Judged on the manifests the chart renders from the customer's values with the real helm
  (--chart, --values), never on the values text: the values only say what was asked for.
  No lab is needed.

  Background:
    Given the chart rendered with the customer's values

  @AIS-CFG-01
  Scenario: Every value the customer sets is read by the chart
    When the chart is rendered again without each key the customer set
    Then no key leaves the rendering unchanged

  @AIS-CFG-02
  Scenario: A telemetry opt-out in the values reaches the ai-service container
    Then the DO_NOT_TRACK the values ask for is in the ai-service container's env

  @AIS-CFG-03
  Scenario: A proxy in the values reaches the ai-service container, and NO_PROXY exempts the cluster
    Then the proxy variables the values ask for are in the ai-service container's env
    And NO_PROXY exempts the control plane and an in-cluster LLM

  @AIS-CFG-04
  Scenario: The LLM key comes from a Secret, never a literal
    Then the ai-service container takes its LLM key from a Secret reference

  @AIS-CFG-05
  Scenario: A production, self-hosted or air-gapped deployment never uses the hosted evaluation proxy
    Then the ai-service container's LLM is not the hosted proxy in production, self-hosted or air-gapped

  @AIS-CFG-06
  Scenario: A self-hosted or air-gapped deployment points the LLM inside the cluster
    Then the ai-service container's LLM is an in-cluster or private address when self-hosted or air-gapped

  @AIS-CFG-07
  Scenario: An air-gapped deployment pulls every image from its private registry
    Then every rendered image comes from the private registry the values name when air-gapped

  @AIS-CFG-08
  Scenario: Every rendered manifest is valid for the supported Kubernetes versions
    Then every rendered manifest passes the strict Kubernetes schemas
