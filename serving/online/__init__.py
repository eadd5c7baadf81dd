"""One recommendation, online: the policy composing A/B arms, candidates, the list policy,
the popularity fallback and the served-list log; model status; experiments and exploration;
fresh titles; the recommender (profile -> retrieve -> rank); the profile stores."""
