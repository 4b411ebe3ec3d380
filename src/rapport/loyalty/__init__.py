"""The loyalty programme: points ledger, tiers, coupons and personal discounts, the checkout."""
