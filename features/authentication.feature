@authentication
Feature: Authentication - the assistant uses the JWT of the logged-in user
  The service must identify the user by a valid token before it does anything, and that token
  is the user's own business: it never goes to the model provider.

  Rule: No valid token, no action

    @AIS-AUTH-01
    Scenario: A chat without a bearer token is refused before anything happens
      Given the witnesses are shown to record a reader's chat
      When an anonymous user chats
      Then the chat reached neither the LLM nor the control plane
      And the chat is refused

    @AIS-AUTH-02
    Scenario Outline: A token that is <variant> is refused like every bad token
      Given the witnesses are shown to record a reader's chat
      When the reader chats with a token that is <variant>
      Then the chat reached neither the LLM nor the control plane, nor anything the token names
      And the refusal looks exactly like the refusal of a garbage token
      And the chat is refused

      Examples: validity at the edges, not hours off
        | variant                   |
        | expired                   |
        | expired-seconds-ago       |
        | expired-minutes-ago       |
        | not-yet-valid             |
        | not-yet-valid-for-seconds |
        | issued-in-the-future      |

      Examples: keys the issuer never published, and headers that name their own
        | variant                   |
        | unknown-key               |
        | unknown-key-known-kid     |
        | jku-attacker-keys         |
        | x5u-attacker-certificate  |
        | embedded-x5c-certificate  |
        | embedded-jwk              |
        | kid-path-traversal        |
        | kid-sql-injection         |
        | unknown-critical-header   |

      Examples: algorithms
        | variant                   |
        | alg-none                  |
        | alg-none-capitalised      |
        | alg-none-upper-case       |
        | signature-stripped        |
        | hs256-with-public-key     |

      Examples: claims
        | variant                   |
        | wrong-issuer              |
        | wrong-audience            |
        | missing-subject           |
        | tampered-payload          |

  Rule: The user's token stays between the user, the service and the control plane

    @AIS-AUTH-03
    Scenario Outline: The <persona>'s token never reaches the LLM, on the first request or later ones
      When the <persona> asks the assistant to use every tool on every resource
      And the <persona> chats following the LLM script "one-tool"
      Then the <persona>'s token appears in no LLM request of any of those chats, in any form
      And the chat succeeded

      Examples:
        | persona |
        | reader  |
        | admin   |

    @AIS-AUTH-03 @lifetime
    Scenario: No user's token reached the LLM host in any form, over the service's whole life
      Then no token of any user appears in anything the LLM hosts received since the lab started

  Rule: No identity provider, no entry; a rotated key is followed

    @AIS-AUTH-04
    Scenario Outline: With the identity provider <fault> and no keys fetched before, every token is refused
      Given the witnesses are shown to record a reader's chat
      When the identity provider is <fault> and the service has just started afresh
      And the reader chats, and so does a token signed with a key the issuer never published
      And the identity provider is back
      And the reader chats following the LLM script "one-tool"
      Then no chat reached the LLM or the control plane while the identity provider was <fault>
      And the reader's token was accepted once the identity provider was back

      Examples: down (nothing listens: connections refused), failing, and holding its answer past the service's patience
        | fault         |
        | down          |
        | answering 500 |
        | answering 503 |
        | slow          |

    @AIS-AUTH-04
    Scenario: After the identity provider rotates its keys, the new key is accepted and the removed one refused
      Given the witnesses are shown to record a reader's chat
      When the identity provider publishes a new signing key and removes the old one
      And the reader chats with a token signed with the new key
      And the reader chats with a token signed with the removed key
      Then the token signed with the removed key was refused, and the one signed with the new key accepted
