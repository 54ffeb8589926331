"""Phrase banks for the ticket simulator: per-intent requests, urgency cues, channel styling."""

from __future__ import annotations

from typing import Final

# Per intent: request sentences. {amount}, {merchant}, {days}, {currency} are filled in.
REQUESTS: Final[dict[str, tuple[str, ...]]] = {
    "card_arrival": (
        "I ordered a new card {days} days ago and it still hasn't arrived.",
        "When will my replacement card be delivered?",
        "My card has not come in the post yet, can you track it?",
        "Still waiting on my debit card, is it on its way?",
        "How long does it take for a new card to arrive?",
        "The card you sent me never showed up at my address.",
    ),
    "card_lost_or_stolen": (
        "I lost my card somewhere in town, please block it.",
        "My wallet was stolen with my bank card inside.",
        "I can't find my credit card anywhere, I think it's lost.",
        "Someone took my card from my bag, freeze it please.",
        "My card was stolen last night, what should I do?",
        "I left my card at a restaurant and it's gone.",
    ),
    "card_declined": (
        "My card was declined at {merchant} even though I have money.",
        "Why does my card keep getting rejected when I pay online?",
        "Payment of {amount} {currency} was refused at the checkout.",
        "The terminal said declined when I tried to pay for groceries.",
        "My card doesn't work in shops anymore.",
        "Every purchase I try with my card fails.",
    ),
    "pin_blocked": (
        "I entered the wrong PIN three times and now it's blocked.",
        "My PIN is locked, how do I unblock it?",
        "The ATM says my PIN has been blocked.",
        "I forgot my PIN and got locked out of the cash machine.",
        "Can you reset my blocked card PIN?",
    ),
    "transfer_failed": (
        "My transfer of {amount} {currency} to my landlord failed.",
        "The bank transfer I made bounced back, why?",
        "I tried to send money and got an error that the transfer failed.",
        "My payment to another account was rejected.",
        "The transfer didn't go through and the money is back in my account.",
    ),
    "transfer_pending": (
        "My transfer has been pending for {days} days.",
        "I sent {amount} {currency} but it still shows as pending.",
        "How long until my outgoing transfer completes?",
        "The money I sent hasn't reached the recipient yet.",
        "Why is my bank transfer still processing?",
    ),
    "refund_request": (
        "I returned an item to {merchant} and want my refund of {amount} {currency}.",
        "The merchant promised a refund but it never arrived.",
        "How do I get a refund for a cancelled order?",
        "I'm still waiting for my money back from {merchant}.",
        "Please refund the payment, the order was never delivered.",
    ),
    "dispute_charge": (
        "There is a charge of {amount} {currency} from {merchant} I don't recognise.",
        "I was charged twice for the same purchase at {merchant}.",
        "I want to dispute a payment on my statement.",
        "There's a transaction I never made, I want to contest it.",
        "I've been billed for a subscription I cancelled.",
    ),
    "account_access": (
        "I can't log in to the app, it says my password is wrong.",
        "I'm locked out of online banking.",
        "The app won't let me sign in after the update.",
        "I forgot my password and the reset email never comes.",
        "My account access is blocked, I cannot log in.",
    ),
    "change_personal_details": (
        "I moved house and need to update my address.",
        "How do I change the phone number on my account?",
        "I got married and want to change my surname.",
        "Please update my email address on file.",
        "I need to correct my date of birth on the account.",
    ),
    "close_account": (
        "I want to close my account.",
        "Please cancel my account and send the remaining balance.",
        "How do I permanently delete my bank account?",
        "I'd like to terminate my account with you.",
        "I'm moving banks, please close everything.",
    ),
    "fees_and_charges": (
        "Why was I charged a fee of {amount} {currency}?",
        "What are the fees for withdrawing cash abroad?",
        "I see a monthly charge I didn't expect on my account.",
        "Is there a fee for international transfers?",
        "You took a service charge, what is it for?",
    ),
    "exchange_rate": (
        "What exchange rate did you use for my payment in {currency}?",
        "The currency conversion rate on my purchase looks wrong.",
        "How much will I get if I exchange {amount} {currency}?",
        "Why is your exchange rate different from the market rate?",
        "Which rate applies when I pay abroad?",
    ),
    "top_up_failed": (
        "My top-up of {amount} {currency} failed.",
        "I tried to add money to my account but the top up didn't work.",
        "The top-up was declined but my card was charged.",
        "Why can't I top up with my card?",
        "Adding funds keeps failing with an error.",
    ),
    "statement_request": (
        "Can I get a statement for the last {days} days?",
        "I need a bank statement for my mortgage application.",
        "How do I download my monthly statements?",
        "Please send me an official statement of my account.",
        "Where can I find my transaction history as a PDF?",
    ),
    "fraud_report": (
        "Someone is using my account without permission.",
        "I got a call from someone pretending to be the bank and gave them my code.",
        "There are several payments I didn't make, I think I've been hacked.",
        "I clicked a phishing link and entered my details.",
        "Fraudulent transactions of {amount} {currency} appeared on my account.",
    ),
    "loan_inquiry": (
        "What interest rate would I get on a personal loan of {amount} {currency}?",
        "Am I eligible for a loan?",
        "How do I apply for a car loan?",
        "Can I increase my overdraft limit?",
        "What are the repayment terms for your loans?",
    ),
    "complaint": (
        "I'm very unhappy with the service I received in branch.",
        "Your support team was rude to me on the phone.",
        "I want to make a formal complaint about how my case was handled.",
        "This is the third time I'm writing and nobody answers.",
        "Your app is terrible and keeps crashing, I want to complain.",
    ),
    "out_of_scope": (
        "What's the weather like tomorrow?",
        "Can you recommend a good pizza place nearby?",
        "Who won the football match last night?",
        "Tell me a joke.",
        "How do I fix my washing machine?",
    ),
}

# Base urgency per intent; cues may raise or lower it.
BASE_URGENCY: Final[dict[str, str]] = {
    "card_arrival": "normal",
    "card_lost_or_stolen": "high",
    "card_declined": "normal",
    "pin_blocked": "normal",
    "transfer_failed": "high",
    "transfer_pending": "normal",
    "refund_request": "low",
    "dispute_charge": "normal",
    "account_access": "high",
    "change_personal_details": "low",
    "close_account": "low",
    "fees_and_charges": "low",
    "exchange_rate": "low",
    "top_up_failed": "normal",
    "statement_request": "low",
    "fraud_report": "critical",
    "loan_inquiry": "low",
    "complaint": "normal",
    "out_of_scope": "low",
}

URGENCY_CUES: Final[dict[str, tuple[str, ...]]] = {
    "low": ("No rush on this.", "Whenever you get a chance.", "Just curious.", ""),
    "normal": ("", "Thanks in advance.", "Could you look into it?"),
    "high": ("Please help as soon as possible.", "This is urgent.", "I need this sorted today."),
    "critical": (
        "URGENT: I need this fixed right now!",
        "Please act immediately, this is an emergency.",
        "I am losing money as we speak, help now!",
    ),
}

GREETINGS: Final = ("Hi,", "Hello,", "Dear support team,", "Hey there,", "Good morning,", "")
SIGNOFFS: Final = ("Thanks,", "Kind regards,", "Best,", "Cheers,", "Regards,")
NAMES: Final = (
    "Anna Schmidt",
    "James O'Brien",
    "Priya Patel",
    "Lukas Novak",
    "Maria Garcia",
    "Chen Wei",
    "Sofia Rossi",
    "Tom Baker",
    "Amira Haddad",
    "Jonas Berg",
)
MERCHANTS: Final = ("Amazon", "Tesco", "Uber", "Netflix", "IKEA", "Zalando", "Spotify", "Lidl")
CURRENCIES: Final = ("EUR", "GBP", "USD", "CHF")
SUBJECTS: Final[dict[str, str]] = {intent: intent.replace("_", " ").capitalize() for intent in REQUESTS}

# Drift mode: a new product's vocabulary and a shifted intent mix.
DRIFT_PHRASES: Final = (
    "This is about my new crypto wallet.",
    "It's for the buy-now-pay-later plan.",
    "Regarding the virtual card in the new app.",
    "The instant-savings vault feature is involved.",
)
DRIFT_INTENT_BOOST: Final[dict[str, float]] = {"top_up_failed": 6.0, "exchange_rate": 5.0, "fraud_report": 3.0}
