-- 00012 validate_foreign_keys: VALIDATE CONSTRAINT for every foreign key of
-- 00011.
--
-- Addresses: Migration HIGH "no NOT VALID + later VALIDATE" (the second half)
-- and the FK list of "Schema - Missing Physical FKs". VALIDATE scans the
-- existing rows under SHARE UPDATE EXCLUSIVE, which lets reads and writes
-- continue. All run in one transaction: if any existing row dangles, the
-- error names the constraint, nothing is marked valid, and the migration can
-- be re-run after the data is repaired (new rows were checked since 00011).
-- Down is empty: a validated constraint is dropped by 00011's Down.

-- +goose Up
ALTER TABLE users VALIDATE CONSTRAINT users_referred_by_fk;
ALTER TABLE categories VALIDATE CONSTRAINT categories_parent_fk;
ALTER TABLE request_templates VALIDATE CONSTRAINT request_templates_seller_fk;
ALTER TABLE request_templates VALIDATE CONSTRAINT request_templates_category_fk;
ALTER TABLE purchase_requests VALIDATE CONSTRAINT pr_buyer_fk;
ALTER TABLE purchase_requests VALIDATE CONSTRAINT pr_category_fk;
ALTER TABLE purchase_requests VALIDATE CONSTRAINT pr_selected_offer_fk;
ALTER TABLE purchase_requests VALIDATE CONSTRAINT pr_template_fk;
ALTER TABLE purchase_request_delivery_info VALIDATE CONSTRAINT prdi_pr_fk;
ALTER TABLE purchase_request_delivery_address VALIDATE CONSTRAINT prda_delivery_info_fk;
ALTER TABLE purchase_request_seller_delivery_info VALIDATE CONSTRAINT prsdi_pr_fk;
ALTER TABLE purchase_request_service_info VALIDATE CONSTRAINT prsi_pr_fk;
ALTER TABLE purchase_request_specifications VALIDATE CONSTRAINT prs_pr_fk;
ALTER TABLE purchase_request_preferred_sellers VALIDATE CONSTRAINT prps_pr_fk;
ALTER TABLE purchase_request_preferred_sellers VALIDATE CONSTRAINT prps_seller_fk;
ALTER TABLE delivery_attempts VALIDATE CONSTRAINT da_delivery_info_fk;
ALTER TABLE delivery_attempts VALIDATE CONSTRAINT da_seller_fk;
ALTER TABLE seller_offers VALIDATE CONSTRAINT so_pr_fk;
ALTER TABLE seller_offers VALIDATE CONSTRAINT so_seller_fk;
ALTER TABLE seller_offers VALIDATE CONSTRAINT so_template_fk;
ALTER TABLE payments VALIDATE CONSTRAINT payments_pr_fk;
ALTER TABLE payments VALIDATE CONSTRAINT payments_seller_offer_fk;
ALTER TABLE payments VALIDATE CONSTRAINT payments_buyer_fk;
ALTER TABLE payments VALIDATE CONSTRAINT payments_seller_fk;
ALTER TABLE payment_quotes VALIDATE CONSTRAINT pq_payment_fk;
ALTER TABLE payment_quotes VALIDATE CONSTRAINT pq_pr_fk;
ALTER TABLE payment_quotes VALIDATE CONSTRAINT pq_seller_offer_fk;
ALTER TABLE funds_ledger_entries VALIDATE CONSTRAINT fle_pr_fk;
ALTER TABLE funds_ledger_entries VALIDATE CONSTRAINT fle_payment_fk;
ALTER TABLE funds_ledger_entries VALIDATE CONSTRAINT fle_user_fk;
ALTER TABLE derived_destinations VALIDATE CONSTRAINT dd_buyer_fk;
ALTER TABLE derived_destinations VALIDATE CONSTRAINT dd_seller_fk;
ALTER TABLE derived_destinations VALIDATE CONSTRAINT dd_seller_offer_fk;
ALTER TABLE derived_destination_sweeps VALIDATE CONSTRAINT dds_destination_fk;
ALTER TABLE trezor_accounts VALIDATE CONSTRAINT ta_user_fk;
ALTER TABLE trezor_derived_addresses VALIDATE CONSTRAINT tda_account_fk;
ALTER TABLE trezor_derived_addresses VALIDATE CONSTRAINT tda_payment_fk;
ALTER TABLE point_transactions VALIDATE CONSTRAINT pt_user_fk;
ALTER TABLE point_transactions VALIDATE CONSTRAINT pt_referred_user_fk;
ALTER TABLE point_transactions VALIDATE CONSTRAINT pt_pr_fk;

-- +goose Down
-- Nothing to undo: see 00011.
